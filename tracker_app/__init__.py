"""tracker_app: not built yet (see the project's issues)."""
