"""Enrolment endpoints: devices (racers) and relays (admins), and the relay's race config."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..auth.principal import Role, caller, requires
from ..enrolment import Enrolment
from ..validation import json_object, path_int


def service(request: Request) -> Enrolment:
    enrolment: Enrolment = request.app.state.enrolment
    return enrolment


@requires(Role.RACER)
async def enrol_device(request: Request) -> JSONResponse:
    """``{"public_key": base64}`` → a device certificate for the racer's races."""
    result = service(request).enrol_device(caller(request), await json_object(request))
    return JSONResponse(result, status_code=201)


@requires(Role.RACER, Role.ADMIN)
async def list_devices(request: Request) -> JSONResponse:
    """Racers see their devices; admins see all."""
    who = caller(request)
    rows = service(request).devices.of_user(None if who.role is Role.ADMIN else who.id)
    for row in rows:
        row["device_id"] = row["device_id"].hex()
    return JSONResponse(rows)


@requires(Role.ADMIN)
async def enrol_relay(request: Request) -> JSONResponse:
    """``{"name", "race_ids"}`` → the relay and its credential (shown once)."""
    result = service(request).enrol_relay(await json_object(request))
    return JSONResponse(result, status_code=201)


@requires(Role.ADMIN, Role.OFFICIAL)
async def list_relays(request: Request) -> JSONResponse:
    """Enrolled relays and their races."""
    return JSONResponse(service(request).relays.overview())


@requires(Role.ADMIN)
async def update_relay(request: Request) -> JSONResponse:
    """``{"race_ids"?, "disabled"?}``."""
    relay_id = path_int(request, "relay_id")
    return JSONResponse(service(request).update_relay(relay_id, await json_object(request)))


@requires(Role.RELAY)
async def relay_config(request: Request) -> JSONResponse:
    """The calling relay's races: course, riders, issuer key."""
    return JSONResponse(service(request).relay_config(caller(request)))


routes = [
    Route("/api/devices", enrol_device, methods=["POST"]),
    Route("/api/devices", list_devices, methods=["GET"]),
    Route("/api/relays", enrol_relay, methods=["POST"]),
    Route("/api/relays", list_relays, methods=["GET"]),
    Route("/api/relays/{relay_id:int}", update_relay, methods=["PATCH"]),
    Route("/api/relay/config", relay_config, methods=["GET"]),
]
