"""HTTP endpoints, one module per concept; each exposes ``routes``."""
