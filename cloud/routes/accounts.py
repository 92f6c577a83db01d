"""Account endpoints: register, log in/out, refresh, password, me, JWKS, admin user management
(list, create, change, unlock, reset a password)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..auth.accounts import Accounts, Login
from ..auth.middleware import clear_session_cookie, session_cookie, set_session_cookie
from ..auth.principal import Role, caller, public, requires
from ..auth.tokens import WebSession, jwks
from ..auth.user_admin import UserAdmin
from ..errors import ApiError
from ..settings import Settings
from ..validation import json_object, path_int

PEOPLE = (Role.ADMIN, Role.OFFICIAL, Role.RACER, Role.SPECTATOR)
HASHING = CapacityLimiter(4)
"""Argon2id runs in threads, 64 MiB each: at most this many at once (memory stays bounded)."""

P = ParamSpec("P")
T = TypeVar("T")


async def hashing(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run something that hashes or verifies a password in a worker thread."""
    return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs), limiter=HASHING)


def accounts(request: Request) -> Accounts:
    service: Accounts = request.app.state.accounts
    return service


def user_admin(request: Request) -> UserAdmin:
    service: UserAdmin = request.app.state.user_admin
    return service


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


def web_session(request: Request) -> WebSession | None:
    session: WebSession | None = getattr(request.state, "session", None)
    return session


def address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@public
async def register(request: Request) -> JSONResponse:
    """``{"username", "password", "role": "racer"|"spectator", "email"?}`` → the new user."""
    data = await json_object(request)
    user = await hashing(accounts(request).register, data, address(request))
    return JSONResponse({"user": user.public()}, status_code=201)


@public
async def login(request: Request) -> JSONResponse:
    """``{"username", "password", "session"?}`` → tokens, or a cookie session and CSRF token."""
    data = await json_object(request)
    result = await hashing(accounts(request).login, data, address(request))
    return signed_in(request, result)


@public
async def complete_reset(request: Request) -> JSONResponse:
    """``{"username", "temporary_password", "new_password", "session"?}`` → as login."""
    data = await json_object(request)
    result = await hashing(accounts(request).complete_reset, data, address(request))
    return signed_in(request, result)


def signed_in(request: Request, result: Login) -> JSONResponse:
    response = JSONResponse(result.body, headers={"Cache-Control": "no-store"})
    if result.session_token is not None:
        set_session_cookie(response, result.session_token, settings(request))
    return response


@public
async def refresh(request: Request) -> JSONResponse:
    """``{"refresh_token"}`` → a new access token and refresh token (the old one is spent)."""
    data = await json_object(request)
    return JSONResponse(accounts(request).refresh(data))


@public
async def logout(request: Request) -> Response:
    """Revoke ``{"refresh_token"}`` and/or the cookie session; the cookie is cleared."""
    data = await json_object(request)
    token = data.get("refresh_token")
    if token is not None and not isinstance(token, str):
        raise ApiError(
            400, "invalid", "refresh_token must be a string", {"refresh_token": "string"}
        )
    accounts(request).logout(token, session_cookie(request))
    response = Response(status_code=204)
    clear_session_cookie(response, settings(request))
    return response


@requires(*PEOPLE)
async def change_password(request: Request) -> JSONResponse:
    """``{"current_password", "new_password"}``; other sessions and refresh tokens end."""
    data = await json_object(request)
    service = accounts(request)
    body = await hashing(
        service.change_password, caller(request), data, web_session(request), address(request)
    )
    return JSONResponse(body)


@requires(*PEOPLE)
async def me(request: Request) -> JSONResponse:
    """The caller's account, and the CSRF token when calling with a web session."""
    who = caller(request)
    user = accounts(request).users.get(who.id)
    if user is None:
        raise ApiError(401, "unauthenticated", "this account no longer exists")
    session = web_session(request)
    return JSONResponse(
        {"user": user.public(), "csrf_token": session.csrf_token if session else None}
    )


@public
async def jwks_document(request: Request) -> JSONResponse:
    """The public key set that verifies access tokens (relays cache it)."""
    body = jwks(request.app.state.stores.key)
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})


@requires(Role.ADMIN)
async def list_users(request: Request) -> JSONResponse:
    """All accounts, ``?role=racer`` to filter, with lock-out and password-reset state."""
    return JSONResponse(user_admin(request).list_users(request.query_params.get("role")))


@requires(Role.ADMIN)
async def create_user(request: Request) -> JSONResponse:
    """``{"username", "password", "role", "email"?}`` with any person's role."""
    data = await json_object(request)
    user = await hashing(user_admin(request).create_user, caller(request), data)
    return JSONResponse(user, status_code=201)


@requires(Role.ADMIN)
async def update_user(request: Request) -> JSONResponse:
    """``{"role"?, "disabled"?}``; disabling ends the account's sessions and refresh tokens."""
    data = await json_object(request)
    user = user_admin(request).update_user(caller(request), path_int(request, "user_id"), data)
    return JSONResponse(user)


@requires(Role.ADMIN)
async def unlock_user(request: Request) -> JSONResponse:
    """End the account's lock-out now."""
    user = user_admin(request).unlock(caller(request), path_int(request, "user_id"))
    return JSONResponse(user)


@requires(Role.ADMIN)
async def reset_password(request: Request) -> JSONResponse:
    """A one-time temporary password for the account (shown once); its sessions end."""
    body = await hashing(
        user_admin(request).reset_password, caller(request), path_int(request, "user_id")
    )
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


routes = [
    Route("/api/auth/register", register, methods=["POST"]),
    Route("/api/auth/login", login, methods=["POST"]),
    Route("/api/auth/refresh", refresh, methods=["POST"]),
    Route("/api/auth/logout", logout, methods=["POST"]),
    Route("/api/auth/password", change_password, methods=["POST"]),
    Route("/api/auth/complete-reset", complete_reset, methods=["POST"]),
    Route("/api/me", me, methods=["GET"]),
    Route("/.well-known/jwks.json", jwks_document, methods=["GET"]),
    Route("/api/users", list_users, methods=["GET"]),
    Route("/api/users", create_user, methods=["POST"]),
    Route("/api/users/{user_id:int}", update_user, methods=["PATCH"]),
    Route("/api/users/{user_id:int}/unlock", unlock_user, methods=["POST"]),
    Route("/api/users/{user_id:int}/password-reset", reset_password, methods=["POST"]),
]
