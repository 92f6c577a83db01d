"""The replay's data: ``GET /api/races/{id}/track?step_s=5``, every rider's positions."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..auth.principal import Role, requires
from ..errors import bad_request, not_found
from ..history.replay import DEFAULT_STEP_S, MAX_STEP_S, Replay
from ..validation import path_int

EVERYONE = (Role.ADMIN, Role.OFFICIAL, Role.RACER, Role.SPECTATOR)


def step_s(request: Request) -> int:
    """``?step_s=N``: whole seconds in 1..MAX_STEP_S (default 5), or a 400."""
    raw = request.query_params.get("step_s")
    if raw is None:
        return DEFAULT_STEP_S
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_STEP_S:
        reason = f"an integer in 1..{MAX_STEP_S}"
        raise bad_request(f"step_s must be {reason}", step_s=reason)
    return int(raw)


@requires(*EVERYONE)
async def track(request: Request) -> JSONResponse:
    """Every rider's positions in a race, resampled every ``step_s`` seconds."""
    race_id = path_int(request, "race_id")
    step = step_s(request)
    stores = request.app.state.stores
    if stores.races.get(race_id) is None:
        raise not_found(f"race {race_id}")
    replay = Replay(stores.history)
    return JSONResponse(await run_in_threadpool(replay.track, race_id, step))


routes = [
    Route("/api/races/{race_id:int}/track", track, methods=["GET"]),
]
