"""The console's HTTP clients: the cloud (with the official's login) and the event relay.

Both take race-control commands through one small interface, :class:`ControlTarget`
(a ``name`` and ``submit(command) -> Receipt``), so the dispatcher can try the cloud, then
the relay, with the same body. Network trouble, 5xx and 429 raise
:class:`~console_tui.errors.Unreachable` (try again later, elsewhere); a 4xx raises
:class:`~console_tui.errors.Refused` (sending it again will not help).

The cloud client keeps the login: it refreshes the access token a minute before it
lapses, and once more on a 401, one refresh at a time (a refresh token works once, and
presenting a used one revokes every session of the user).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .commands import Command, Delivery, Receipt
from .errors import NotOfficial, Refused, SessionExpired, Unreachable

__all__ = ["STAFF", "CloudClient", "ControlTarget", "RelayClient", "Session", "check"]

STAFF = ("official", "admin")
"""Roles allowed to run race control."""
REFRESH_MARGIN_S = 60.0
"""Refresh the access token this long before it lapses."""
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
STREAM_TIMEOUT = httpx.Timeout(10.0, connect=5.0, read=45.0)
"""The live stream carries a keepalive every 15 s: 45 s of silence means it is dead."""


class ControlTarget(Protocol):
    """Something that takes race-control commands: the cloud or the event relay."""

    name: str
    """For people: "cloud", "relay finish-line"."""

    async def submit(self, command: Command) -> Receipt:
        """Send ``command``; raises Unreachable (try elsewhere or later) or Refused."""
        ...


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in official."""

    username: str
    """Their username."""
    user_id: int
    """Their user id."""
    role: str
    """``official`` or ``admin``."""
    access_token: str
    """The current access token (an EdDSA JWT the relays verify offline)."""
    refresh_token: str
    """The one-use refresh token."""
    expires_at: float
    """When the access token lapses, on the client's monotonic clock."""


def _reason(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from the cloud's or the relay's error body."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200].strip() or response.reason_phrase
    if not isinstance(body, dict):
        return "", str(body)[:200]
    error = body.get("error")
    if isinstance(error, dict):  # the cloud: {"error": {"code", "message", "fields"}}
        return str(error.get("code") or ""), str(error.get("message") or "")
    if isinstance(error, str):  # the relay: {"error": reason, "message": ...}
        return error, str(body.get("message") or "")
    return "", str(body)[:200]


def check(response: httpx.Response, server: str) -> None:
    """Raise for an error answer: Unreachable for 5xx and 429, Refused for other 4xx."""
    status = response.status_code
    if status < 400:
        return
    code, message = _reason(response)
    text = message or code or response.reason_phrase
    if status >= 500 or status == 429:
        raise Unreachable(f"{server} answered {status}: {text}")
    if status == 401:
        raise SessionExpired(f"{server}: {text}; log in again", status=status, code=code)
    raise Refused(f"{server}: {text}", status=status, code=code)


def _transport_error(server: str, url: str, exc: httpx.TransportError) -> Unreachable:
    detail = str(exc) or type(exc).__name__
    return Unreachable(f"cannot reach {server} at {url}: {detail}")


class CloudClient:
    """The cloud's API with an official's login."""

    name = "cloud"

    def __init__(
        self,
        url: str,
        *,
        verify: bool | str = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.url, timeout=TIMEOUT, verify=verify)
        self.session: Session | None = None
        self._clock = clock
        self._refreshing = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the connections."""
        await self.http.aclose()

    # -- login ----------------------------------------------------------------------

    async def login(self, username: str, password: str) -> Session:
        """Log in; NotOfficial for a racer or spectator (whose session is ended at once)."""
        response = await self._send(
            "POST", "/api/auth/login", json={"username": username, "password": password}
        )
        if response.status_code != 200:
            if response.status_code >= 500:
                check(response, "the cloud")
            code, message = _reason(response)
            raise Refused(message or "login failed", status=response.status_code, code=code)
        session = self._session(response.json())
        if session.role not in STAFF:
            with contextlib.suppress(Unreachable):  # it lapses by itself; nothing was kept
                await self._send(
                    "POST", "/api/auth/logout", json={"refresh_token": session.refresh_token}
                )
            raise NotOfficial(
                f"{session.username} is a {session.role}: race control is for officials "
                "and admins; ask an admin for an official's account",
                status=403,
                code="not-official",
            )
        self.session = session
        return session

    async def logout(self) -> None:
        """Revoke the refresh token (best effort) and forget the session."""
        session, self.session = self.session, None
        if session is not None:
            with contextlib.suppress(Unreachable):
                await self._send(
                    "POST", "/api/auth/logout", json={"refresh_token": session.refresh_token}
                )

    @property
    def access_token(self) -> str | None:
        """The access token as it is (for the relay, which honours it offline)."""
        return None if self.session is None else self.session.access_token

    async def token(self) -> str:
        """A current access token: refreshed near its expiry when the cloud answers."""
        session = self._logged_in()
        if session.expires_at - self._clock() < REFRESH_MARGIN_S:
            with contextlib.suppress(Unreachable):  # keep the old one: the relay honours it
                await self._refresh(session)
        return self._logged_in().access_token

    async def _refresh(self, used: Session) -> None:
        async with self._refreshing:
            if self.session is not used:
                return  # another task refreshed meanwhile
            response = await self._send(
                "POST", "/api/auth/refresh", json={"refresh_token": used.refresh_token}
            )
            if response.status_code in (400, 401, 403):
                self.session = None
                _, message = _reason(response)
                raise SessionExpired(
                    f"the login ended ({message or response.status_code}): log in again",
                    status=response.status_code,
                    code="session-expired",
                )
            check(response, "the cloud")
            self.session = self._session(response.json())

    def _session(self, body: dict[str, Any]) -> Session:
        user = body["user"]
        return Session(
            username=str(user["username"]),
            user_id=int(user["id"]),
            role=str(user["role"]),
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            expires_at=self._clock() + float(body.get("expires_in") or 900),
        )

    def _logged_in(self) -> Session:
        if self.session is None:
            raise SessionExpired("not logged in", status=401, code="unauthenticated")
        return self.session

    # -- requests -------------------------------------------------------------------

    async def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return await self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise _transport_error("the cloud", self.url, exc) from None

    async def request(
        self, method: str, path: str, *, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        """An authorised request; a 401 refreshes the token once and tries again."""
        session = self._logged_in()
        response = await self._authorised(method, path, body)
        if response.status_code == 401:
            await self._refresh(session)
            response = await self._authorised(method, path, body)
        return response

    async def _authorised(
        self, method: str, path: str, body: dict[str, Any] | None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self.token()}"}
        return await self._send(method, path, json=body, headers=headers)

    async def get_json(self, path: str) -> Any:
        """GET ``path`` as JSON; Unreachable or Refused on failure."""
        response = await self.request("GET", path)
        check(response, "the cloud")
        return response.json()

    async def follow(self, race_id: int) -> AsyncGenerator[dict[str, Any], None]:
        """The race's live stream (NDJSON): the snapshot, then fixes, fix, battery, race and
        action lines.

        Ends when the cloud ends it (``resync``) or after a refresh on 401; raises
        Unreachable when the connection drops.
        """
        session = self._logged_in()
        headers = {"Authorization": f"Bearer {await self.token()}"}
        path = f"/api/races/{race_id}/live"
        try:
            async with self.http.stream(
                "GET", path, headers=headers, timeout=STREAM_TIMEOUT
            ) as response:
                if response.status_code == 401:
                    await response.aread()
                    await self._refresh(session)
                    return
                if response.status_code >= 400:
                    await response.aread()
                    check(response, "the cloud")
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        message = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(message, dict):
                        yield message
        except httpx.TransportError as exc:
            raise _transport_error("the cloud", self.url, exc) from None

    # -- race control ----------------------------------------------------------------

    async def submit(self, command: Command) -> Receipt:
        """Record ``command`` in the cloud (a replayed ``action_id`` counts once)."""
        response = await self.request("POST", command.path, body=command.body())
        if command.is_race_command and response.status_code == 409:
            race = await self.get_json(f"/api/races/{command.race_id}")
            if race.get("state") == command.target_state:
                detail = f"the race was already {command.target_state}"
                return Receipt(command.action_id, Delivery.SETTLED, detail)
        check(response, "the cloud")
        at = response.json().get("t_ms") if not command.is_race_command else None
        return Receipt(command.action_id, Delivery.CLOUD, "cloud", int(at or 0))


class RelayClient:
    """An event relay's TCP API: info, standings, alerts, and race control offline."""

    def __init__(
        self,
        url: str,
        *,
        token: Callable[[], str | None],
        name: str = "relay",
        verify: bool | str = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = name
        self.http = httpx.AsyncClient(base_url=self.url, timeout=TIMEOUT, verify=verify)
        self._token = token

    async def aclose(self) -> None:
        """Close the connections."""
        await self.http.aclose()

    async def _get(self, path: str) -> Any:
        try:
            response = await self.http.get(path)
        except httpx.TransportError as exc:
            raise _transport_error(self.name, self.url, exc) from None
        check(response, self.name)
        return response.json()

    async def info(self) -> dict[str, Any]:
        """``GET /api/info``: name, relay id, races, uplink, trackers, spectators, backlog."""
        info = await self._get("/api/info")
        if not isinstance(info, dict):
            raise Unreachable(f"{self.name} answered /api/info with {type(info).__name__}")
        return info

    async def standings(self, race_id: int) -> dict[str, Any]:
        """The relay's leaderboard and groups for a race."""
        standings = await self._get(f"/api/races/{race_id}/standings")
        return standings if isinstance(standings, dict) else {}

    async def alerts(self, race_id: int) -> list[dict[str, Any]]:
        """What the relay thinks officials should look at."""
        alerts = await self._get(f"/api/races/{race_id}/alerts")
        return [a for a in alerts if isinstance(a, dict)] if isinstance(alerts, list) else []

    async def submit(self, command: Command) -> Receipt:
        """Hand ``command`` to the relay, which verifies the token offline and forwards it.

        A relay that cannot take it now (no token, a token it will not honour, no such
        endpoint or race, not configured yet) raises Unreachable, so the console keeps it.
        """
        token = self._token()
        if token is None:
            raise Unreachable(f"{self.name}: no login to show it")
        try:
            response = await self.http.post(
                command.path,
                json=command.body(),
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.TransportError as exc:
            raise _transport_error(self.name, self.url, exc) from None
        if response.status_code in (401, 404, 405, 503):
            code, message = _reason(response)
            why = message or code or str(response.status_code)
            raise Unreachable(f"{self.name} cannot take it: {why}")
        check(response, self.name)
        return Receipt(command.action_id, Delivery.RELAY, self.name)
