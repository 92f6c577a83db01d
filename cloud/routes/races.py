"""Race endpoints: races, state changes, courses, checkpoints, start lists, audit."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..auth.principal import Role, acting_for, caller, requires
from ..errors import bad_request
from ..races import Races
from ..validation import json_object, path_int, read_body

EVERYONE = (Role.ADMIN, Role.OFFICIAL, Role.RACER, Role.SPECTATOR)
MAX_GPX_BYTES = 20 * 1024 * 1024


def races(request: Request) -> Races:
    service: Races = request.app.state.races
    return service


@requires(*EVERYONE)
async def list_races(request: Request) -> JSONResponse:
    """All races, optionally ``?state=live``."""
    return JSONResponse(races(request).store.overview(request.query_params.get("state")))


@requires(Role.ADMIN)
async def create_race(request: Request) -> JSONResponse:
    """Create a race."""
    race = races(request).create(caller(request), await json_object(request))
    return JSONResponse(race, status_code=201)


@requires(*EVERYONE)
async def get_race(request: Request) -> JSONResponse:
    """One race with its course."""
    return JSONResponse(races(request).get(path_int(request, "race_id")))


@requires(Role.ADMIN)
async def update_race(request: Request) -> JSONResponse:
    """Edit a scheduled race."""
    race_id = path_int(request, "race_id")
    return JSONResponse(races(request).update(caller(request), race_id, await json_object(request)))


@requires(Role.ADMIN)
async def delete_race(request: Request) -> Response:
    """Delete a scheduled race."""
    races(request).delete(caller(request), path_int(request, "race_id"))
    return Response(status_code=204)


@requires(Role.ADMIN, Role.OFFICIAL, Role.RELAY)
async def change_state(request: Request) -> JSONResponse:
    """``{"state": "live"}`` and so on along the race state machine.

    A relay forwards an official's command with ``on_behalf_of`` (see ``acting_for``).
    """
    race_id = path_int(request, "race_id")
    data = await json_object(request)
    who = acting_for(request, data)
    race = await run_in_threadpool(races(request).change_state, who, race_id, data)
    return JSONResponse(race)


@requires(Role.ADMIN)
async def upload_course(request: Request) -> JSONResponse:
    """The course as a GPX file: raw body, or multipart field ``file``; ``?laps=N``."""
    race_id = path_int(request, "race_id")
    try:
        laps = int(request.query_params.get("laps", "1"))
    except ValueError:
        raise bad_request("laps must be an integer", laps="must be an integer") from None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_part_size=MAX_GPX_BYTES) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise bad_request("attach the GPX file as the form field 'file'", file="missing")
            gpx: bytes | None = await upload.read(MAX_GPX_BYTES + 1)
    else:
        gpx = await read_body(request, MAX_GPX_BYTES)
    if gpx is None or len(gpx) > MAX_GPX_BYTES:
        raise bad_request("the GPX file is larger than 20 MB", file="too-large")
    return JSONResponse(races(request).upload_course(caller(request), race_id, gpx, laps))


@requires(Role.ADMIN)
async def set_checkpoints(request: Request) -> JSONResponse:
    """``{"checkpoints": [{name, kind, distance_m, end_m?}]}``."""
    race_id = path_int(request, "race_id")
    data = await json_object(request)
    result = races(request).set_checkpoints(caller(request), race_id, data.get("checkpoints"))
    return JSONResponse(result)


@requires(*EVERYONE)
async def start_list(request: Request) -> JSONResponse:
    """Riders with bibs."""
    race_id = path_int(request, "race_id")
    races(request).get(race_id)
    return JSONResponse(races(request).store.start_list(race_id))


@requires(Role.ADMIN, Role.RACER)
async def register(request: Request) -> JSONResponse:
    """Register for a race (racers: themselves; admins: ``{user_id, bib?}``)."""
    race_id = path_int(request, "race_id")
    result = races(request).register(caller(request), race_id, await json_object(request))
    return JSONResponse(result, status_code=201)


@requires(Role.ADMIN, Role.RACER)
async def withdraw(request: Request) -> Response:
    """Withdraw (racers: themselves; admins: anyone)."""
    races(request).withdraw(
        caller(request), path_int(request, "race_id"), path_int(request, "user_id")
    )
    return Response(status_code=204)


@requires(Role.ADMIN)
async def audit_log(request: Request) -> JSONResponse:
    """Who changed what and when, newest first (``?race_id=N`` or ``?user_id=N``)."""
    object_type, object_id = None, None
    for name, kind in (("race_id", "race"), ("user_id", "user")):
        value = request.query_params.get(name, "")
        if value and not value.isdigit():
            raise bad_request(f"{name} must be a number", **{name: "must be a number"})
        if value:
            object_type, object_id = kind, int(value) or None
    rows = races(request).audit.entries(object_type, object_id)
    return JSONResponse(rows)


routes = [
    Route("/api/races", list_races, methods=["GET"]),
    Route("/api/races", create_race, methods=["POST"]),
    Route("/api/races/{race_id:int}", get_race, methods=["GET"]),
    Route("/api/races/{race_id:int}", update_race, methods=["PATCH"]),
    Route("/api/races/{race_id:int}", delete_race, methods=["DELETE"]),
    Route("/api/races/{race_id:int}/state", change_state, methods=["POST"]),
    Route("/api/races/{race_id:int}/course", upload_course, methods=["PUT"]),
    Route("/api/races/{race_id:int}/checkpoints", set_checkpoints, methods=["PUT"]),
    Route("/api/races/{race_id:int}/riders", start_list, methods=["GET"]),
    Route("/api/races/{race_id:int}/registrations", register, methods=["POST"]),
    Route("/api/races/{race_id:int}/registrations/{user_id:int}", withdraw, methods=["DELETE"]),
    Route("/api/audit", audit_log, methods=["GET"]),
]
