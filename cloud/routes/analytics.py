"""Analytics endpoints; each answers JSON, or CSV with ``?format=csv``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..analytics import Analytics
from ..auth.principal import Role, requires
from ..errors import bad_request
from ..history.analytics import to_csv
from ..validation import path_int

EVERYONE = (Role.ADMIN, Role.OFFICIAL, Role.RACER, Role.SPECTATOR)


async def answer(request: Request, name: str, work: Callable[[], Any]) -> Response:
    result = await run_in_threadpool(work)
    fmt = request.query_params.get("format", "json")
    if fmt == "csv":
        rows = result if isinstance(result, list) else [result]
        headers = {"Content-Disposition": f'attachment; filename="{name}.csv"'}
        return Response(to_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
    if fmt != "json":
        raise bad_request("format must be json or csv", format="json or csv")
    return JSONResponse(result)


def service(request: Request) -> Analytics:
    analytics: Analytics = request.app.state.analytics
    return analytics


@requires(*EVERYONE)
async def results(request: Request) -> Response:
    """Classification of a race."""
    race_id = path_int(request, "race_id")
    return await answer(
        request, f"race-{race_id}-results", lambda: service(request).results(race_id)
    )


@requires(*EVERYONE)
async def stats(request: Request) -> Response:
    """Per-rider statistics of a race."""
    race_id = path_int(request, "race_id")
    return await answer(request, f"race-{race_id}-stats", lambda: service(request).stats(race_id))


@requires(*EVERYONE)
async def summary(request: Request) -> Response:
    """A race at a glance."""
    race_id = path_int(request, "race_id")
    return await answer(
        request, f"race-{race_id}-summary", lambda: service(request).summary(race_id)
    )


@requires(*EVERYONE)
async def season(request: Request) -> Response:
    """A rider's season."""
    rider_id = path_int(request, "rider_id")
    return await answer(
        request, f"rider-{rider_id}-season", lambda: service(request).season(rider_id)
    )


@requires(*EVERYONE)
async def compare(request: Request) -> Response:
    """``?race_ids=1,2,3``: summaries side by side."""
    raw = request.query_params.get("race_ids", "")
    parts = [p for p in raw.split(",") if p]
    if not parts or len(parts) > 50 or not all(p.isdigit() for p in parts):
        raise bad_request("race_ids must list 1..50 race ids, comma-separated", race_ids="1,2,3")
    ids = [int(p) for p in parts]
    return await answer(request, "races-compared", lambda: service(request).compare(ids))


routes = [
    Route("/api/races/{race_id:int}/results", results, methods=["GET"]),
    Route("/api/races/{race_id:int}/stats", stats, methods=["GET"]),
    Route("/api/races/{race_id:int}/summary", summary, methods=["GET"]),
    Route("/api/riders/{rider_id:int}/season", season, methods=["GET"]),
    Route("/api/races/compare", compare, methods=["GET"]),
]
