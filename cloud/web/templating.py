"""Rendering the cloud's pages: one Jinja2 environment for ``cloud/templates/``, shared.

Every page gets ``me`` (the :class:`~cloud.auth.principal.Principal` calling, or None) and
``csrf_token`` (the cookie session's, which ``/static/common/api.js`` sends back on unsafe
requests). :func:`render` adds the headers every page carries: a strict Content Security
Policy (scripts, styles and connections from this origin only: the pages need nothing
from the internet), ``no-store`` (a page holds the session's CSRF token), ``nosniff`` and
no framing.

:func:`html_errors` wraps a page endpoint guarded by ``@requires``: its 401 becomes a
redirect to the login page (coming back afterwards), its 403 and 404 an HTML page saying
why, in place of the API's JSON.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ..auth.principal import Endpoint, principal
from ..auth.tokens import WebSession
from ..errors import ApiError

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""What a back-office page may load. A page that needs more (the spectator app connects
to relays) passes its own policy to :func:`render`."""

MAX_NEXT = 500


def page_context(request: Request) -> dict[str, Any]:
    """What every template sees: the caller and the session's CSRF token."""
    session: WebSession | None = getattr(request.state, "session", None)
    return {"me": principal(request), "csrf_token": session.csrf_token if session else None}


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=environment, context_processors=[page_context])
"""The shared templates; use :func:`render` so pages carry their headers."""


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    csp: str = CONTENT_SECURITY_POLICY,
) -> Response:
    """A page from ``cloud/templates/name`` with the security and caching headers."""
    response = templates.TemplateResponse(request, name, context or {}, status_code=status_code)
    response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def safe_next(value: str | None, default: str = "/") -> str:
    """A path on this site to go to after logging in; anything else becomes ``default``.

    Only absolute paths are kept: never ``//host`` or ``/\\host`` (another site), a scheme,
    or control characters.
    """
    if (
        not value
        or len(value) > MAX_NEXT
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(ord(c) < 0x20 or c == "\x7f" for c in value)
    ):
        return default
    return value


def login_url(request: Request) -> str:
    """The login page, coming back to this request's path and query afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(safe_next(here), safe='')}"


MESSAGES = {
    403: "Your account cannot open this page.",
    404: "There is nothing here.",
}


def html_errors(endpoint: Endpoint) -> Endpoint:
    """Answer a page's 401 with the login page, its 403 and 404 with an HTML page.

    Put it above ``@requires``; the guard's ``roles`` stay visible on the result.
    """

    @functools.wraps(endpoint)
    async def page(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            if exc.status == 401:
                return RedirectResponse(login_url(request), status_code=303)
            if exc.status not in MESSAGES:
                raise
            detail = exc.message[:1].upper() + exc.message[1:] + "."
            context = {"status": exc.status, "title": MESSAGES[exc.status], "detail": detail}
            return render(request, "error.html", context, status_code=exc.status)

    return page
