"""The tracker upload exchange (``POST /v1/hello``, ``/v1/batches``, ``/v1/status``), as
relays serve it.

Public: the device's signatures authenticate what is sent, so there is no account or
token. Rate-limited per client address. Bodies and replies are
:data:`sync_protocol.upload.CONTENT_TYPE`; a request wrong as a whole gets a 4xx with
``{"error": reason, "message": text}`` (the protocol's shape, not the ``/api`` one).
"""

from __future__ import annotations

import functools

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_protocol.upload import (
    BATCHES_PATH,
    CONTENT_TYPE,
    HELLO_PATH,
    MAX_UPLOAD_BYTES,
    STATUS_PATH,
    encode_results,
)

from ..auth.principal import Endpoint, public
from ..device_status import DeviceStatuses
from ..direct import DirectUploads
from ..errors import ApiError

MAX_HELLO_BYTES = 2_048
"""Largest hello body (``SessionHello.decode`` refuses anything longer)."""
MAX_STATUS_BODY = 1_024
"""Largest status body read (``DeviceStatus.decode`` refuses anything over 160 bytes)."""


def protocol_errors(endpoint: Endpoint) -> Endpoint:
    """Render :class:`ApiError` as ``{"error": code, "message": text}`` (with Retry-After)."""

    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            retry = exc.fields.get("retry_after_s")
            headers = {"Retry-After": retry} if retry else None
            body = {"error": exc.code, "message": exc.message}
            return JSONResponse(body, status_code=exc.status, headers=headers)

    return answer


async def upload_body(request: Request, limit: int) -> bytes:
    """The rate-limited, size-limited body of a tracker request in our content type."""
    request.app.state.tracker_limiter.hit(f"tracker:{address(request)}")
    kind = request.headers.get("content-type")
    if kind is not None and kind.partition(";")[0].strip().lower() != CONTENT_TYPE:
        raise ApiError(415, "content-type", f"the body must be {CONTENT_TYPE}, not {kind}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "oversized", f"the body is over {limit:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "oversized", f"the body is over {limit:,} bytes")
    return bytes(body)


def service(request: Request) -> DirectUploads:
    uploads: DirectUploads = request.app.state.direct
    return uploads


def address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@public
@protocol_errors
async def hello(request: Request) -> Response:
    """Body: a session hello. Reply: a hello reply (the cloud's ack; ``live_mac`` false)."""
    body = await upload_body(request, MAX_HELLO_BYTES)
    reply = await run_in_threadpool(service(request).hello, body, address(request))
    return Response(reply.encode(), media_type=CONTENT_TYPE)


@public
@protocol_errors
async def batches(request: Request) -> Response:
    """Body: framed signed batches. Reply: one upload result per batch, once durable."""
    body = await upload_body(request, MAX_UPLOAD_BYTES)
    results = await run_in_threadpool(service(request).batches, body, address(request))
    return Response(encode_results(results), media_type=CONTENT_TYPE)


@public
@protocol_errors
async def status(request: Request) -> Response:
    """Body: a device status signed by the device key. Reply: 204 once published."""
    body = await upload_body(request, MAX_STATUS_BODY)
    statuses: DeviceStatuses = request.app.state.device_status
    await run_in_threadpool(statuses.direct, body, address(request))
    return Response(status_code=204)


routes = [
    Route(HELLO_PATH, hello, methods=["POST"]),
    Route(BATCHES_PATH, batches, methods=["POST"]),
    Route(STATUS_PATH, status, methods=["POST"]),
]
