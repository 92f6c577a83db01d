"""The relay's TCP side (Starlette on Hypercorn): spectator page, WebSocket, health, metrics.

| path | what |
|---|---|
| `GET /` | the spectator page (works with no internet) |
| `GET /api/info` | relay name, races, QUIC port, certificate hash, uplink state |
| `GET /api/races/{id}/standings` | the live leaderboard as JSON (console, tests) |
| `GET /api/races/{id}/alerts` | what officials should look at |
| `GET /api/races/{id}/splits` | checkpoint splits: each line's arrivals, first first |
| `POST /api/races/{id}/actions`, `.../state` | race control while the cloud is away |
| `GET /api/races/{id}/control` | commands taken here and whether the cloud has them |
| `WS /live/{id}` | live frames as binary messages, newest only (WebTransport fallback) |
| `GET /healthz/live`, `GET /healthz/ready` | probes |
| `GET /metrics` | Prometheus |
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from hypercorn.asyncio import serve
from hypercorn.config import Config
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

import sync_protocol

from .control import ControlError
from .metrics import RelayCollector

if TYPE_CHECKING:
    from .relay import Relay

STATIC = Path(__file__).parent / "static"
SHARED = Path(sync_protocol.__file__).parent / "web"
"""The ES modules the cloud's spectator app serves too (frames, course, board, live)."""


def create_app(relay: Relay) -> Starlette:
    """The TCP app of one relay."""

    async def page(_: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def info(_: Request) -> JSONResponse:
        return JSONResponse(relay.info())

    def race_id(request: Request) -> int | JSONResponse:
        value = int(request.path_params["race_id"])
        if relay.config is None or value not in relay.config.races:
            return JSONResponse(
                {"error": "not-found", "message": f"this relay does not serve race {value}"}, 404
            )
        return value

    async def standings(request: Request) -> JSONResponse:
        rid = race_id(request)
        if isinstance(rid, JSONResponse):
            return rid
        return JSONResponse(relay.live.standings(rid, relay.fanout.clock_ms()))

    async def alerts(request: Request) -> JSONResponse:
        rid = race_id(request)
        if isinstance(rid, JSONResponse):
            return rid
        return JSONResponse(relay.live.alerts(rid, relay.fanout.clock_ms()))

    async def splits(request: Request) -> JSONResponse:
        rid = race_id(request)
        if isinstance(rid, JSONResponse):
            return rid
        return JSONResponse(relay.live.splits(rid))

    async def control(request: Request) -> JSONResponse:
        rid = int(request.path_params["race_id"])
        kind = "action" if request.url.path.endswith("/actions") else "state"
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "bad-request", "message": "the body is not JSON"}, 400)
        try:
            result = await relay.submit_command(
                rid, kind, body, request.headers.get("authorization", "")
            )
        except ControlError as exc:
            return JSONResponse({"error": exc.reason, "message": exc.message}, exc.status)
        return JSONResponse(result, 202)

    async def commands(request: Request) -> JSONResponse:
        rid = race_id(request)
        if isinstance(rid, JSONResponse):
            return rid
        return JSONResponse(await asyncio.to_thread(relay.command_log, rid))

    async def live_socket(ws: WebSocket) -> None:
        rid = int(ws.path_params["race_id"])
        if relay.config is None or rid not in relay.config.races:
            await ws.close(code=4404, reason=f"this relay does not serve race {rid}")
            return
        await ws.accept()
        client = relay.fanout.subscribe_socket(rid)
        reader = asyncio.create_task(_drain(ws))
        try:
            while not reader.done():
                frame = asyncio.create_task(client.next_frame())
                done, _ = await asyncio.wait({frame, reader}, return_when=asyncio.FIRST_COMPLETED)
                if frame not in done:
                    frame.cancel()
                    break
                await ws.send_bytes(frame.result())
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            reader.cancel()
            relay.fanout.unsubscribe_socket(rid, client)

    async def healthy(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> JSONResponse:
        ok = relay.config is not None and relay.committer.alive
        body = {
            "status": "ok" if ok else "not-ready",
            "configured": relay.config is not None,
            "uplink": relay.uplink.status.state if relay.uplink else "none",
        }
        return JSONResponse(body, 200 if ok else 503)

    async def metrics(_: Request) -> Response:
        registry = CollectorRegistry()
        registry.register(RelayCollector(relay))
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/races/{race_id:int}/standings", standings),
        Route("/api/races/{race_id:int}/alerts", alerts),
        Route("/api/races/{race_id:int}/splits", splits),
        Route("/api/races/{race_id:int}/actions", control, methods=["POST"]),
        Route("/api/races/{race_id:int}/state", control, methods=["POST"]),
        Route("/api/races/{race_id:int}/control", commands),
        WebSocketRoute("/live/{race_id:int}", live_socket),
        Route("/healthz/live", healthy),
        Route("/healthz/ready", ready),
        Route("/metrics", metrics),
    ]
    routes.append(Mount("/static/shared", StaticFiles(directory=SHARED), name="shared"))
    if STATIC.is_dir():
        routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    return Starlette(routes=routes)


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) what the browser sends, to notice when it goes away."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def serve_http(relay: Relay) -> tuple[int, asyncio.Task[None]]:
    """Start Hypercorn on the relay's TCP address; returns the bound port and its task."""
    family = socket.AF_INET6 if ":" in relay.settings.http_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((relay.settings.http_host, relay.settings.http_port))
    sock.listen(512)
    port = int(sock.getsockname()[1])
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # Hypercorn owns (and closes) the socket now
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    app = create_app(relay)
    task = asyncio.create_task(serve(app, config, shutdown_trigger=asyncio.Event().wait))  # type: ignore[arg-type]
    return port, task
