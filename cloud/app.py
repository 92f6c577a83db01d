"""The cloud ASGI app: ``create_app(settings, stores, bus)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from . import errors, web
from .analytics import Analytics
from .auth.accounts import Accounts
from .auth.middleware import AuthMiddleware
from .auth.ratelimit import RateLimiter
from .auth.user_admin import UserAdmin
from .bus import InProcessBus, LiveBus, seed_from_history
from .control import RaceControl
from .device_status import DeviceStatuses
from .direct import DirectUploads
from .enrolment import Enrolment
from .ingest import Ingest
from .races import Races
from .routes import (
    accounts,
    analytics,
    control,
    enrolment,
    health,
    ingest,
    metrics,
    races,
    replay,
    upload,
)
from .settings import Settings
from .stores import Stores


def create_app(
    settings: Settings, stores: Stores | None = None, bus: LiveBus | None = None
) -> Starlette:
    """Build the app; ``stores`` are opened from ``settings`` when not given (and closed).

    ``bus``: the live bus, an :class:`InProcessBus` (the one-machine default) when not
    given and then seeded from history; any other :class:`LiveBus` fits (a NATS one for
    several replicas, which keeps the races' state itself).
    """
    owned = stores is None
    stores = stores or Stores.open(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if owned:
            stores.close()

    routes: list[BaseRoute] = [
        *health.routes,
        *accounts.routes,
        *races.routes,
        *enrolment.routes,
        *ingest.routes,
        *upload.routes,
        *analytics.routes,
        *replay.routes,
        *control.routes,
        *metrics.routes,
        *web.routes,
    ]
    account_service = Accounts(settings, stores.users, stores.key)
    middleware: list[Middleware] = [
        Middleware(AuthMiddleware, accounts=account_service, stores=stores)
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={errors.ApiError: errors.render},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.stores = stores
    app.state.accounts = account_service
    app.state.user_admin = UserAdmin(account_service, stores.audit)
    if bus is None:
        bus = InProcessBus()
        seed_from_history(bus, stores.races, stores.actions, stores.history)
    app.state.bus = bus
    app.state.races = Races(stores.races, stores.audit, stores.history, bus)
    app.state.control = RaceControl(stores.races, stores.actions, stores.audit, bus)
    app.state.analytics = Analytics(stores.races, stores.actions, stores.history)
    app.state.enrolment = Enrolment(
        stores.key,
        stores.races,
        stores.devices,
        stores.relays,
        stores.actions,
        stores.audit,
        settings.device_cert_ttl_s,
        settings.issuer,
    )
    app.state.ingest_limiter = RateLimiter(
        settings.ingest_rate_per_s, 1.0, what="uploads from this relay"
    )
    app.state.ingest = Ingest(
        stores.key,
        stores.devices,
        stores.races,
        stores.relays,
        stores.ingest_state,
        stores.history,
        bus,
    )
    app.state.tracker_limiter = RateLimiter(
        settings.tracker_uploads, settings.tracker_window_s, what="uploads from this address"
    )
    app.state.direct = DirectUploads(app.state.ingest, stores.key, stores.devices)
    app.state.device_status = DeviceStatuses(
        stores.key, stores.devices, stores.races, stores.relays, bus
    )
    return app
