"""The authenticated caller of a request, and the role guard every endpoint uses."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from starlette.requests import Request
from starlette.responses import Response

from ..errors import ApiError


class Role(StrEnum):
    """Roles of people, plus ``relay`` for enrolled relays (machine credentials)."""

    ADMIN = "admin"
    OFFICIAL = "official"
    RACER = "racer"
    SPECTATOR = "spectator"
    RELAY = "relay"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request (set on ``request.state.principal`` by the auth middleware)."""

    id: int
    """User id, or relay id for ``Role.RELAY``."""
    name: str
    """Username (or relay name)."""
    role: Role
    """The caller's role."""


Endpoint = Callable[[Request], Awaitable[Response]]


def principal(request: Request) -> Principal | None:
    """The request's authenticated caller, if any."""
    return getattr(request.state, "principal", None)


def caller(request: Request) -> Principal:
    """The authenticated caller of a guarded endpoint (401 if there is none)."""
    who = principal(request)
    if who is None:  # @requires makes this unreachable; never trust it silently
        raise ApiError(401, "unauthenticated", "log in first")
    return who


def requires(*roles: Role) -> Callable[[Endpoint], Endpoint]:
    """Guard an endpoint: 401 when anonymous, 403 when the role is not among ``roles``."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            who = principal(request)
            if who is None:
                raise ApiError(401, "unauthenticated", "log in first")
            if who.role not in roles:
                allowed = ", ".join(r.value for r in roles)
                raise ApiError(403, "forbidden", f"this needs the role {allowed}")
            return await endpoint(request)

        guarded.roles = roles  # type: ignore[attr-defined]
        return guarded

    return decorate


def public(endpoint: Endpoint) -> Endpoint:
    """Mark an endpoint as open to anonymous callers (the role-matrix test reads this)."""
    endpoint.roles = ()  # type: ignore[attr-defined]
    return endpoint


def acting_for(request: Request, data: dict[str, object]) -> Principal:
    """Who a race-control command is from.

    An official or admin acts for themself. An event relay forwards commands officials
    gave it while the cloud was out of reach (it checked their tokens offline): it may do
    so only for races it serves, and names the official in ``on_behalf_of``.
    """
    who = caller(request)
    if who.role is not Role.RELAY:
        data.pop("on_behalf_of", None)
        return who
    race_id = int(request.path_params["race_id"])
    stores = request.app.state.stores
    if stores.races.get(race_id) is None:
        raise ApiError(404, "not-found", f"race {race_id} does not exist")
    if race_id not in stores.relays.race_ids(who.id):
        raise ApiError(403, "forbidden", f"this relay does not serve race {race_id}")
    behalf = data.pop("on_behalf_of", None)
    if not isinstance(behalf, dict):
        raise ApiError(400, "bad-request", "a relay must name the official in on_behalf_of")
    uid, name, role = behalf.get("id"), behalf.get("name"), behalf.get("role")
    if not isinstance(uid, int) or not isinstance(name, str) or role not in ("admin", "official"):
        raise ApiError(400, "bad-request", "on_behalf_of needs the official's id, name and role")
    return Principal(uid, name, Role(role))
