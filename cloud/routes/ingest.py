"""Ingest endpoint: relays post length-prefixed signed batches, get per-batch acks."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..auth.principal import Role, caller, requires
from ..errors import ApiError
from ..ingest import Ingest

MAX_UPLOAD_BYTES = 16 * 1024 * 1024


@requires(Role.RELAY)
async def ingest(request: Request) -> JSONResponse:
    """Body: batches as ``varint length + batch`` frames. Reply: ``{"results": [...]}``.

    Each result has ``outcome`` (accepted, duplicate, gap, rejected), and ``ack``
    (``acked_seq``, ``held``, ``missing``) once the fixes are durable, or ``reason``.
    """
    relay = caller(request)
    request.app.state.ingest_limiter.hit(f"relay:{relay.id}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "too-large", "an upload body is at most 16 MiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "too-large", "an upload body is at most 16 MiB")
    service: Ingest = request.app.state.ingest
    results = await run_in_threadpool(service.receive_from_relay, relay, bytes(body))
    return JSONResponse({"results": [r.to_json() for r in results]})


routes = [Route("/api/ingest", ingest, methods=["POST"])]
