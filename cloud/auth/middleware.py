"""Who is calling: a pure ASGI middleware that sets ``request.state.principal``.

Credentials, first match wins:

1. ``Authorization: Bearer <access token>``: an EdDSA JWT, verified offline with the
   cloud key (no database lookup; see :mod:`cloud.auth.tokens` for what that means for
   disabled accounts).
2. ``Authorization: Relay <credential>``: an enrolled relay, checked by
   ``stores.relays.authenticate`` (principal role ``relay``).
3. The ``gruppetto_session`` cookie: a web session, looked up on every request. Unsafe
   methods (POST, PUT, PATCH, DELETE) must echo the session's CSRF token in
   ``X-CSRF-Token`` (403 ``csrf`` otherwise); bearer and relay callers need none.

No credential means anonymous (``principal`` is None) and ``@requires`` answers 401. A
presented but invalid bearer or relay credential is a 401 at once, even on public paths.
A stale cookie counts as anonymous. ``request.state.session`` holds the
:class:`~cloud.auth.tokens.WebSession` for cookie callers, else None.

Refusals (here and in ``@requires``) answer before the request body is read. Over
HTTP/1.1 Hypercorn then closes the keep-alive connection without saying so, and a client
reusing it fails ("server disconnected"). So before a response starts, an unread body of
up to ``DRAIN_LIMIT`` bytes is read and dropped; a larger one gets ``Connection: close``.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from ..errors import ApiError, render
from ..settings import Settings
from .accounts import Accounts
from .principal import Principal
from .tokens import WebSession

SESSION_COOKIE = "gruppetto_session"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DRAIN_LIMIT = 1024 * 1024


class RelayAuthenticator(Protocol):
    """What the relay store offers (``stores.relays``)."""

    def authenticate(self, credential: str) -> Principal | None:
        """The relay a credential belongs to, or None."""
        ...


def set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    """HttpOnly, SameSite=Lax, Path=/, Secure unless ``settings.secure_cookies`` is off."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.refresh_token_ttl_s,
        path="/",
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    """Tell the browser to drop the session cookie."""
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=settings.secure_cookies, httponly=True, samesite="lax"
    )


def session_cookie(request: Request) -> str | None:
    """The raw session cookie of a request, if any."""
    return request.cookies.get(SESSION_COOKIE) or None


class AuthMiddleware:
    """Sets ``scope["state"]["principal"]`` and ``["session"]``; refuses bad credentials."""

    def __init__(self, app: ASGIApp, *, accounts: Accounts, stores: object) -> None:
        self.app = app
        self.accounts = accounts
        self.stores = stores
        """Anything with (eventually) a ``relays`` attribute; read on each relay request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            body = BodyTracker(receive)
            receive, send = body, body.wrap(send)
        try:
            who, session = self.authenticate(scope)
        except ApiError as exc:
            await self.refuse(scope, receive, send, exc)
            return
        scope["state"] = {**scope.get("state", {}), "principal": who, "session": session}
        await self.app(scope, receive, send)

    def authenticate(self, scope: Scope) -> tuple[Principal | None, WebSession | None]:
        """The caller of a request, or an :class:`ApiError` saying why the credential fails."""
        headers = Headers(scope=scope)
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, credential = authorization.strip().partition(" ")
            credential = credential.strip()
            if scheme.lower() == "bearer" and credential:
                return self.accounts.access.verify(credential), None
            if scheme.lower() == "relay" and credential:
                return self.relay(credential), None
            raise ApiError(
                401,
                "invalid-authorization",
                "the Authorization header must be 'Bearer <access token>' or 'Relay <credential>'",
            )
        token = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
        session = self.accounts.sessions.lookup(token) if token else None
        if session is None:
            return None, None
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            sent = headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
                raise ApiError(
                    403,
                    "csrf",
                    "this request needs the session's CSRF token in the X-CSRF-Token header"
                    " (it comes with the login answer and GET /api/me)",
                )
        return session.user.principal, session

    def relay(self, credential: str) -> Principal:
        """An enrolled relay, or 401."""
        relays: RelayAuthenticator | None = getattr(self.stores, "relays", None)
        if relays is None:
            raise ApiError(
                401, "invalid-relay-credential", "relay credentials are not accepted yet"
            )
        who = relays.authenticate(credential)
        if who is None:
            raise ApiError(
                401,
                "invalid-relay-credential",
                "the relay credential is unknown, wrong or disabled",
            )
        return who

    @staticmethod
    async def refuse(scope: Scope, receive: Receive, send: Send, exc: ApiError) -> None:
        """Answer with the error (HTTP), or close the handshake with 1008 (WebSocket)."""
        if scope["type"] == "websocket":
            await WebSocketClose(code=1008, reason=exc.message[:120])(scope, receive, send)
            return
        response = await render(Request(scope, receive), exc)
        if exc.status == 401:
            scheme = "Relay" if exc.code == "invalid-relay-credential" else "Bearer"
            response.headers["WWW-Authenticate"] = f'{scheme} realm="gruppetto"'
        await response(scope, receive, send)


class BodyTracker:
    """Wraps ``receive`` to see when the request body has been read; drains it if not."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.done = False

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message

    def wrap(self, send: Send) -> Send:
        """``send`` that first reads what is left of the body (or asks to close)."""

        async def send_after_body(message: Message) -> None:
            starting = message["type"] == "http.response.start"
            if starting and not self.done and not await self.drain(DRAIN_LIMIT):
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        return send_after_body

    async def drain(self, limit: int) -> bool:
        """Read and drop the rest of the body; False when it exceeds ``limit`` bytes."""
        read = 0
        while not self.done:
            if read > limit:
                return False
            message = await self()
            read += len(message.get("body", b""))
        return True
