"""The cloud's web pages: static files, log in and out, the back office, the spectator app.

``routes`` goes at the end of the app's routes (after the API). Page endpoints carry
``@public`` or ``@requires`` like the API's, so the role rules read the same everywhere.
The spectator app's routes come first: they mount ``/static/shared``, which the cloud's
``/static`` mount would otherwise answer.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from . import backoffice, pages, spectator
from .templating import STATIC_DIR

routes: list[BaseRoute] = [
    *spectator.routes,
    Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    *pages.routes,
    *backoffice.routes,
]
"""Every web route of the cloud."""
