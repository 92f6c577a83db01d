"""The column codec of live snapshots: one column of varints per rider field.

Pure functions, no I/O. A snapshot writes each of its columns of ``n`` values with one of
the codings below (chosen per field by :mod:`sync_protocol.frames`); the byte layout is
specified in ``docs/live-frames.md``.
"""

from __future__ import annotations

from itertools import pairwise

from .errors import DecodeError
from .frame_types import MAX_SAFE
from .wire import Reader, put_svarint, put_uvarint, unzigzag, zigzag

CHAIN = 0
"""n zigzag differences from the rider before (the first from 0)."""
DESC = 1
"""The first value zigzag, then n-1 unsigned drops from the rider before (descending)."""
PLAIN = 2
"""n unsigned varints."""
SPARSE = 3
"""Mostly zero: the count of non-zero values, then (zeros skipped, value) pairs."""
SPARSE_CHAIN = 4
""":data:`SPARSE` over the zigzag differences of :data:`CHAIN`."""


def put_column(out: bytearray, coding: int, column: list[int]) -> None:
    if coding == DESC:
        if column:
            put_svarint(out, column[0])
        for ahead, behind in pairwise(column):
            put_uvarint(out, ahead - behind)
        return
    if coding in (CHAIN, SPARSE_CHAIN):
        column = [zigzag(value - before) for before, value in pairwise([0, *column])]
    if coding in (CHAIN, PLAIN):
        for value in column:
            put_uvarint(out, value)
        return
    nonzero = [(i, value) for i, value in enumerate(column) if value]
    put_uvarint(out, len(nonzero))
    previous = -1
    for i, value in nonzero:
        put_uvarint(out, i - previous - 1)
        put_uvarint(out, value)
        previous = i


def read_column(r: Reader, coding: int, count: int, field: str) -> list[int]:
    if coding == DESC:
        column = [unzigzag(r.uvarint(MAX_SAFE, field))] if count else []
        for _ in range(count - 1):
            column.append(column[-1] - r.uvarint(MAX_SAFE, field))
        return column
    if coding in (CHAIN, PLAIN):
        column = [r.uvarint(MAX_SAFE, field) for _ in range(count)]
    else:
        column = [0] * count
        i = -1
        for _ in range(r.uvarint(count, f"{field} count")):
            i += r.uvarint(MAX_SAFE, f"{field} skip") + 1
            value = r.uvarint(MAX_SAFE, field)
            if i >= count or value == 0:
                raise DecodeError(f"live frame: sparse column {field} is malformed")
            column[i] = value
    if coding in (CHAIN, SPARSE_CHAIN):
        for i, value in enumerate(column):
            column[i] = unzigzag(value) + (column[i - 1] if i else 0)
    return column
