"""The cloud service: system of record, ingest, history and analytics (Starlette)."""
