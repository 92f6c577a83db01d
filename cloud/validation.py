"""Reading request input: JSON bodies and typed fields, each failure a 400 with its field."""

from __future__ import annotations

import datetime
import json
from typing import Any

from starlette.requests import Request

from .errors import bad_request

MAX_JSON_BYTES = 1024 * 1024


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it proves longer than ``limit`` bytes (the
    rest is left unread: the auth middleware drains it or closes the connection)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    body = await read_body(request, MAX_JSON_BYTES)
    if body is None:
        raise bad_request("request body is too large for JSON", body="at most 1 MiB")
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"body is not valid JSON: {exc}", body="invalid JSON") from None
    if not isinstance(value, dict):
        raise bad_request("body must be a JSON object", body="expected an object")
    return value


def text(
    data: dict[str, Any], name: str, *, min_len: int = 1, max_len: int = 200, required: bool = True
) -> str | None:
    """A string field, stripped, with a length range."""
    value = data.get(name)
    if value is None:
        if required:
            raise bad_request(f"{name} is required", **{name: "required"})
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string", **{name: "must be a string"})
    value = value.strip()
    if not min_len <= len(value) <= max_len:
        reason = f"must be {min_len}..{max_len} characters"
        raise bad_request(f"{name} {reason}", **{name: reason})
    return value


def integer(
    data: dict[str, Any], name: str, *, low: int, high: int, required: bool = True
) -> int | None:
    """An integer field within ``low..high``."""
    value = data.get(name)
    if value is None:
        if required:
            raise bad_request(f"{name} is required", **{name: "required"})
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        reason = f"must be an integer in {low}..{high}"
        raise bad_request(f"{name} {reason}", **{name: reason})
    return value


def boolean(data: dict[str, Any], name: str, default: bool) -> bool:
    """A true/false field."""
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false", **{name: "must be true or false"})
    return value


def timestamp_ms(data: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    """An ISO 8601 date-time with a time zone (or UTC milliseconds) as UTC milliseconds."""
    value = data.get(name)
    if value is None:
        if required:
            raise bad_request(f"{name} is required", **{name: "required"})
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return int(moment.timestamp() * 1000)
    reason = "must be an ISO 8601 date-time with a time zone, e.g. 2026-07-01T12:00:00Z"
    raise bad_request(f"{name} {reason}", **{name: reason})


def path_int(request: Request, name: str) -> int:
    """An integer path parameter (the router's int convertor already checked it)."""
    return int(request.path_params[name])
