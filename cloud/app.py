"""The cloud ASGI app: ``create_app(settings, stores)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from . import errors
from .routes import health
from .settings import Settings
from .stores import Stores


def create_app(settings: Settings, stores: Stores | None = None) -> Starlette:
    """Build the app; ``stores`` are opened from ``settings`` when not given (and closed)."""
    owned = stores is None
    stores = stores or Stores.open(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if owned:
            stores.close()

    routes: list[BaseRoute] = [*health.routes]
    middleware: list[Middleware] = []
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={errors.ApiError: errors.render},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.stores = stores
    return app
