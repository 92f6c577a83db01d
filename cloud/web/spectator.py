"""The spectator app: the races to watch, a race live, a past race.

| path | what |
|---|---|
| `/watch` | races live now, upcoming and past (server-rendered; the page refreshes it) |
| `/watch/{id}` | a race live: course map, leaderboard, groups, profile, splits, over a relay |
| `/watch/{id}/results` | results, per-rider statistics, splits, comparison charts, a replay |
| `/static/shared/` | the ES modules the relay's own page serves too (`sync_protocol/web/`) |

Every page is for people who are logged in (anyone else goes to the login page and comes
back). The pages are shells: their data comes from the JSON API, and the live frames from
a relay of the race (``GET /api/races/{id}/relays`` says which), so the cloud carries no
live traffic. The live page's Content Security Policy lets it connect to those relays'
addresses and nothing else.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

import sync_protocol

from ..auth.principal import Role, requires
from ..races import Races
from ..validation import path_int
from .templating import CONTENT_SECURITY_POLICY, html_errors, render

SHARED_DIR = Path(sync_protocol.__file__).resolve().parent / "web"
"""``frames.js``, ``course.js``, ``board.js``, ``live.js``: the relay serves them too."""
PEOPLE = (Role.ADMIN, Role.OFFICIAL, Role.RACER, Role.SPECTATOR)
LIVE_STATES = frozenset({"live", "neutralised"})
PAST_STATES = frozenset({"finished", "published"})
SECTIONS = (
    ("live", "Live now", "Nothing is racing right now."),
    ("upcoming", "Upcoming", "No race is scheduled."),
    ("past", "Past races", "No race has finished yet."),
)
"""The race list's sections: (key, heading, what to say when it is empty)."""
STATE_LABELS = {
    "scheduled": "Scheduled",
    "live": "Live",
    "neutralised": "Neutralised",
    "finished": "Finished",
    "published": "Results published",
}


def iso_time(ms: int) -> str:
    """UTC milliseconds as ISO 8601 (a ``<time datetime>``; the page shows local time)."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_text(ms: int) -> str:
    """UTC milliseconds as readable text, until the page shows them in local time."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%d %b %Y, %H:%M UTC")


FORMATTING = {"state_labels": STATE_LABELS, "iso_time": iso_time, "utc_text": utc_text}
"""What every spectator template gets to show states and times."""


def races(request: Request) -> Races:
    service: Races = request.app.state.races
    return service


def race_sections(overview: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Races by section: live and upcoming soonest first, past races latest first."""
    by_key: dict[str, list[Mapping[str, Any]]] = {key: [] for key, _, _ in SECTIONS}
    for race in overview:
        state = race["state"]
        key = "live" if state in LIVE_STATES else "past" if state in PAST_STATES else "upcoming"
        by_key[key].append(race)
    for key in ("live", "upcoming"):
        by_key[key].sort(key=lambda r: (r["starts_at_ms"], r["id"]))
    by_key["past"].sort(key=lambda r: (-r["starts_at_ms"], -r["id"]))
    return [
        {"key": key, "title": title, "empty": empty, "races": by_key[key]}
        for key, title, empty in SECTIONS
    ]


def watch_path(race: Mapping[str, Any]) -> str:
    """Where the list sends a race: its results once it is over, else the live page."""
    if race["state"] in PAST_STATES:
        return f"/watch/{race['id']}/results"
    return f"/watch/{race['id']}"


def relay_origins(relays: Iterable[Mapping[str, Any]]) -> list[str]:
    """The origins a live page may connect to: each relay's WebTransport address and the
    WebSocket address beside its page (``ws://`` for ``http://``, ``wss://`` for
    ``https://``). Addresses that are not plain http(s) URLs with a host are left out."""
    origins: list[str] = []
    for relay in relays:
        status = relay.get("status") or {}
        for key, schemes in (
            ("webtransport_url", {"https": "https"}),
            ("page_url", {"http": "ws", "https": "wss"}),
        ):
            origin = _origin(status.get(key), schemes)
            if origin is not None and origin not in origins:
                origins.append(origin)
    return origins


DEFAULT_PORTS = {"https": 443, "wss": 443, "ws": 80}
"""Left out of an origin, as browsers do."""


def _origin(url: object, schemes: Mapping[str, str]) -> str | None:
    """``scheme://host:port`` of ``url`` with its scheme mapped, or None if unusable."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme not in schemes or not host or not _plain_host(host):
        return None
    scheme = schemes[parts.scheme]
    shown = f"[{host}]" if ":" in host else host
    default = DEFAULT_PORTS[scheme]
    return f"{scheme}://{shown}" + (f":{port}" if port and port != default else "")


def _plain_host(host: str) -> bool:
    """A DNS name, IPv4 or IPv6 address: nothing that could change a CSP's meaning."""
    return all(c.isascii() and (c.isalnum() or c in ".-:") for c in host)


def live_policy(origins: Iterable[str]) -> str:
    """The pages' Content Security Policy, also allowing connections to ``origins``."""
    allowed = " ".join(["'self'", *origins])
    policy = CONTENT_SECURITY_POLICY.replace("connect-src 'self'", f"connect-src {allowed}")
    if policy == CONTENT_SECURITY_POLICY and allowed != "'self'":
        raise RuntimeError("the pages' Content Security Policy has no connect-src 'self'")
    return policy


def race_summary(race: Mapping[str, Any]) -> dict[str, Any]:
    """A race without its course geometry, for a template."""
    summary = {k: v for k, v in race.items() if k != "course"}
    summary["has_course"] = race.get("course") is not None
    return summary


@html_errors
@requires(*PEOPLE)
async def race_list(request: Request) -> Response:
    """``/watch``: races live now, upcoming and past."""
    context = {
        **FORMATTING,
        "section": "races",
        "sections": race_sections(races(request).store.overview()),
        "watch_path": watch_path,
    }
    return render(request, "watch/races.html", context)


@html_errors
@requires(*PEOPLE)
async def live_race(request: Request) -> Response:
    """``/watch/{id}``: a race as it happens; a race that is over goes to its results."""
    race = races(request).get(path_int(request, "race_id"))
    if race["state"] in PAST_STATES:
        return RedirectResponse(f"/watch/{race['id']}/results", status_code=303)
    relays = request.app.state.stores.relays.serving(race["id"])
    origins = relay_origins(relays)
    context = {**FORMATTING, "race": race_summary(race), "relay_origins": origins}
    return render(request, "watch/live.html", context, csp=live_policy(origins))


@html_errors
@requires(*PEOPLE)
async def past_race(request: Request) -> Response:
    """``/watch/{id}/results``: results, statistics, splits, charts and the replay."""
    race = races(request).get(path_int(request, "race_id"))
    over = race["state"] in PAST_STATES
    context = {**FORMATTING, "race": race_summary(race), "over": over}
    return render(request, "watch/results.html", context)


routes: list[BaseRoute] = [
    Route("/watch", race_list, methods=["GET"]),
    Route("/watch/{race_id:int}", live_race, methods=["GET"]),
    Route("/watch/{race_id:int}/results", past_race, methods=["GET"]),
    Mount("/static/shared", StaticFiles(directory=SHARED_DIR), name="shared"),
]
"""The spectator app's routes; they go before the cloud's ``/static`` mount."""
