"""Who is calling: accounts, passwords, tokens, sessions, roles and rate limits."""
