"""Race-control endpoints and the relays' live stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ..auth.principal import Role, acting_for, caller, requires
from ..bus import QUEUE_LIMIT, LiveBus, Message
from ..control import RaceControl
from ..errors import ApiError, not_found
from ..validation import json_object, path_int

EVERYONE = (Role.ADMIN, Role.OFFICIAL, Role.RACER, Role.SPECTATOR)
KEEPALIVE_S = 15.0


def control(request: Request) -> RaceControl:
    service: RaceControl = request.app.state.control
    return service


@requires(Role.ADMIN, Role.OFFICIAL, Role.RELAY)
async def act(request: Request) -> JSONResponse:
    """``{action_id, kind, rider_id, seconds?, reason}``; 201 when new, 200 for a replay.

    A relay forwards an official's command with ``on_behalf_of`` (see ``acting_for``).
    """
    race_id = path_int(request, "race_id")
    data = await json_object(request)
    who = acting_for(request, data)
    action, new = await run_in_threadpool(control(request).act, who, race_id, data)
    return JSONResponse(action, status_code=201 if new else 200)


@requires(*EVERYONE, Role.RELAY)
async def actions(request: Request) -> JSONResponse:
    """Every official action of a race, oldest first."""
    race_id = path_int(request, "race_id")
    if control(request).races.get(race_id) is None:
        raise not_found(f"race {race_id}")
    return JSONResponse(control(request).actions.of_race(race_id))


@requires(Role.RELAY, Role.ADMIN, Role.OFFICIAL)
async def live(request: Request) -> StreamingResponse:
    """NDJSON: the race's snapshot, then every fix (``fixes`` rows, then the rider's newest as
    ``fix``), battery, race and action message as it happens.

    Relays may follow only the races they serve. A line ``{"type": "keepalive"}`` goes
    out when nothing else did for 15 s; ``{"type": "resync"}`` ends a stream that fell
    behind (reconnect for a fresh snapshot).
    """
    race_id = path_int(request, "race_id")
    who = caller(request)
    stores = request.app.state.stores
    if stores.races.get(race_id) is None:
        raise not_found(f"race {race_id}")
    if who.role is Role.RELAY and race_id not in stores.relays.race_ids(who.id):
        raise ApiError(403, "forbidden", f"this relay does not serve race {race_id}")
    bus: LiveBus = request.app.state.bus

    async def lines() -> AsyncIterator[bytes]:
        # A pump task drains the subscription into a bounded queue, so waiting for the next
        # message with a keepalive timeout never cancels the subscription itself; a client
        # that stops reading fills the queue, and the bus then drops it with a resync.
        out: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=QUEUE_LIMIT)

        async def pump() -> None:
            async for message in bus.subscribe(race_id):
                await out.put(message)
            await out.put(None)

        task = asyncio.create_task(pump())
        try:
            while True:
                try:
                    message = await asyncio.wait_for(out.get(), KEEPALIVE_S)
                except TimeoutError:
                    message = {"type": "keepalive"}
                if message is None:
                    return
                yield (json.dumps(message, separators=(",", ":")) + "\n").encode()
        finally:
            task.cancel()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


routes = [
    Route("/api/races/{race_id:int}/actions", act, methods=["POST"]),
    Route("/api/races/{race_id:int}/actions", actions, methods=["GET"]),
    Route("/api/races/{race_id:int}/live", live, methods=["GET"]),
]
