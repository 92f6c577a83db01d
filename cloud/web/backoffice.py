"""The back office's pages: races, their course, riders and results; users, relays, the
audit log and past-race statistics.

Admins change things; officials see races, relays and statistics and move races along
their state machine (the API decides: these pages only leave out controls an official
could not use). Each page is a server-rendered shell; its data comes from the JSON API,
fetched by the page's ES module in ``cloud/static/admin/``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..auth.principal import Role, requires
from ..races import Races
from ..store.races import RACE_STATES, TRANSITIONS
from ..validation import path_int
from .templating import html_errors, render

STAFF = (Role.ADMIN, Role.OFFICIAL)
RACE_TABS = (
    ("overview", "Overview", ""),
    ("course", "Course", "/course"),
    ("riders", "Riders", "/riders"),
    ("results", "Results and statistics", "/results"),
)
"""The race pages: (name, label, path after ``/admin/races/{id}``)."""
STATE_LABELS = {
    "scheduled": "Scheduled",
    "live": "Live",
    "neutralised": "Neutralised",
    "finished": "Finished",
    "published": "Results published",
}
"""How the pages name the race states (``/static/common/ui.js`` has the same words)."""


def races(request: Request) -> Races:
    service: Races = request.app.state.races
    return service


def race_page(request: Request, tab: str) -> Response:
    """One of a race's pages; 404 (as HTML) when the race does not exist."""
    race = races(request).get(path_int(request, "race_id"))
    summary: dict[str, Any] = {k: v for k, v in race.items() if k != "course"}
    summary["has_course"] = race["course"] is not None
    context = {
        "section": "races",
        "race": summary,
        "tab": tab,
        "tabs": RACE_TABS,
        "states": RACE_STATES,
        "state_labels": STATE_LABELS,
        "transitions": TRANSITIONS,
    }
    return render(request, f"admin/race-{tab}.html", context)


@html_errors
@requires(*STAFF)
async def home(request: Request) -> Response:
    """``/admin``: the races."""
    return RedirectResponse("/admin/races", status_code=303)


@html_errors
@requires(*STAFF)
async def race_list(request: Request) -> Response:
    """Every race by start time; admins create races here."""
    context = {"section": "races", "states": RACE_STATES, "state_labels": STATE_LABELS}
    return render(request, "admin/races.html", context)


@html_errors
@requires(*STAFF)
async def race_overview(request: Request) -> Response:
    """A race: details, edits, state changes (with confirmation), where it is relayed."""
    return race_page(request, "overview")


@html_errors
@requires(*STAFF)
async def race_course(request: Request) -> Response:
    """The course: GPX upload, the drawn course, its elevation profile and checkpoints."""
    return race_page(request, "course")


@html_errors
@requires(*STAFF)
async def race_riders(request: Request) -> Response:
    """The start list: registrations and bibs."""
    return race_page(request, "riders")


@html_errors
@requires(*STAFF)
async def race_results(request: Request) -> Response:
    """Results, publishing them, and the race's statistics with charts."""
    return race_page(request, "results")


@html_errors
@requires(Role.ADMIN)
async def users(request: Request) -> Response:
    """Accounts and roles: invite, change role, disable, unlock, reset a password."""
    return render(request, "admin/users.html", {"section": "users"})


@html_errors
@requires(*STAFF)
async def relays(request: Request) -> Response:
    """Relays with their health; admins enrol them and choose their races."""
    return render(request, "admin/relays.html", {"section": "relays"})


@html_errors
@requires(Role.ADMIN)
async def audit(request: Request) -> Response:
    """Who changed what and when."""
    return render(request, "admin/audit.html", {"section": "audit"})


@html_errors
@requires(*STAFF)
async def statistics(request: Request) -> Response:
    """Past races side by side."""
    return render(request, "admin/stats.html", {"section": "stats"})


routes = [
    Route("/admin", home, methods=["GET"]),
    Route("/admin/races", race_list, methods=["GET"]),
    Route("/admin/races/{race_id:int}", race_overview, methods=["GET"]),
    Route("/admin/races/{race_id:int}/course", race_course, methods=["GET"]),
    Route("/admin/races/{race_id:int}/riders", race_riders, methods=["GET"]),
    Route("/admin/races/{race_id:int}/results", race_results, methods=["GET"]),
    Route("/admin/users", users, methods=["GET"]),
    Route("/admin/relays", relays, methods=["GET"]),
    Route("/admin/audit", audit, methods=["GET"]),
    Route("/admin/stats", statistics, methods=["GET"]),
]
