"""API errors: one exception type, rendered as JSON with field-level reasons."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class ApiError(Exception):
    """A client-facing error: HTTP status, a stable code, a message and per-field reasons."""

    def __init__(
        self, status: int, code: str, message: str, fields: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


def bad_request(message: str, **fields: str) -> ApiError:
    """400 with reasons per field (``invalid`` code)."""
    return ApiError(400, "invalid", message, fields)


def not_found(what: str) -> ApiError:
    """404 for an object that does not exist (or that the caller may not see)."""
    return ApiError(404, "not-found", f"{what} not found")


async def render(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for :class:`ApiError`."""
    assert isinstance(exc, ApiError)
    body = {"error": {"code": exc.code, "message": exc.message, "fields": exc.fields}}
    headers = {"Retry-After": exc.fields["retry_after_s"]} if exc.status == 429 else None
    return JSONResponse(body, status_code=exc.status, headers=headers)
