"""console_tui: not built yet (see the project's issues)."""
