"""The pages everyone meets: the landing page, log in, log out, register.

They are thin: the forms post to the JSON API (``/api/auth/...``) from small ES modules
in ``cloud/static/common/``. The landing page sends admins and officials to the back
office and everyone else to the spectator app.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..auth.principal import Role, principal, public
from .templating import render, safe_next

BACK_OFFICE = "/admin"
SPECTATOR_APP = "/watch"
STAFF = frozenset({Role.ADMIN, Role.OFFICIAL})


def home_of(role: Role | None) -> str:
    """Where a person of ``role`` (None: anonymous) starts."""
    return BACK_OFFICE if role in STAFF else SPECTATOR_APP


@public
async def landing(request: Request) -> Response:
    """``/``: the back office for admins and officials, the spectator app for the others."""
    who = principal(request)
    return RedirectResponse(home_of(who.role if who else None), status_code=303)


@public
async def login_page(request: Request) -> Response:
    """The login form (and choosing one's own password after an admin's reset)."""
    context = {
        "next": safe_next(request.query_params.get("next")),
        "logged_out": request.query_params.get("logged_out") == "1",
    }
    return render(request, "login.html", context)


@public
async def logout_page(request: Request) -> Response:
    """A page with one button that ends the session (a POST with the CSRF token)."""
    return render(request, "logout.html")


@public
async def register_page(request: Request) -> Response:
    """Create a racer or spectator account, then log in."""
    return render(request, "register.html", {"next": safe_next(request.query_params.get("next"))})


routes = [
    Route("/", landing, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/logout", logout_page, methods=["GET"]),
    Route("/register", register_page, methods=["GET"]),
]
