"""Several messages in one body: each as a varint length followed by its bytes.

Uploads (tracker → relay, relay → cloud) carry many batches per request so one round trip
and one durable commit serve them all.
"""

from __future__ import annotations

from collections.abc import Iterable

from .batch import MAX_BATCH_BYTES
from .errors import DecodeError, LimitExceeded
from .wire import Reader, put_uvarint

MAX_FRAMES = 1_024
"""Most messages one body may carry."""


def encode_frames(messages: Iterable[bytes]) -> bytes:
    """Concatenate messages, each prefixed with its length."""
    out = bytearray()
    for message in messages:
        put_uvarint(out, len(message))
        out += message
    return bytes(out)


def decode_frames(
    data: bytes, *, max_frames: int = MAX_FRAMES, max_frame_bytes: int = MAX_BATCH_BYTES
) -> list[bytes]:
    """Split a body into messages; a bad length or too many frames is a DecodeError."""
    reader = Reader(data, "upload body")
    frames: list[bytes] = []
    while reader.remaining:
        if len(frames) == max_frames:
            raise LimitExceeded(f"upload body holds more than {max_frames} messages")
        length = reader.uvarint(max_frame_bytes, "message length")
        if length == 0:
            raise DecodeError("upload body holds an empty message")
        frames.append(reader.bytes(length))
    return frames
