"""edge_relay: not built yet (see the project's issues)."""
