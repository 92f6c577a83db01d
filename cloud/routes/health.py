"""Liveness and readiness probes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..auth.principal import public


@public
async def live(request: Request) -> JSONResponse:
    """The process is up."""
    return JSONResponse({"status": "ok"})


@public
async def ready(request: Request) -> JSONResponse:
    """Every store answers a query."""
    stores = request.app.state.stores
    checks: dict[str, str] = {}
    try:
        stores.db.conn.execute("SELECT 1").fetchone()
        checks["sqlite"] = "ok"
    except Exception as exc:  # a probe reports, it does not crash
        checks["sqlite"] = f"failed: {exc}"
    try:
        with stores.history.reader() as cursor:
            cursor.execute("SELECT 1").fetchall()
        checks["duckdb"] = "ok"
    except Exception as exc:  # a probe reports, it does not crash
        checks["duckdb"] = f"failed: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "failing", "checks": checks}, 200 if ok else 503)


routes = [
    Route("/healthz/live", live, methods=["GET"]),
    Route("/healthz/ready", ready, methods=["GET"]),
]
