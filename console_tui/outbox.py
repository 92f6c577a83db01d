"""The local queue: commands no server could take yet, kept in ``DATA/queue.json``.

A command enters the queue only when neither the cloud nor the event relay took it, and
leaves only after a server recorded it (or refused it for good), so a crash at any
instant replays it at worst, which the servers count once by its ``action_id``. The file
is rewritten whole (temporary file, fsync, rename) on every change, and one console at a
time may use a data directory (an exclusive lock on ``DATA/console.lock``).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from .commands import Command
from .errors import BadCommand, ConsoleError

__all__ = ["Outbox", "Queued"]

VERSION = 1


@dataclass(frozen=True, slots=True)
class Queued:
    """One waiting command."""

    command: Command
    """What the official decided."""
    queued_ms: int
    """When it entered the queue, UTC ms."""
    attempts: int = 0
    """Sends tried from the queue so far."""
    last_error: str = ""
    """Why the last attempt did not go through."""

    def to_json(self) -> dict[str, Any]:
        """As stored."""
        return {
            "command": self.command.to_json(),
            "queued_ms": self.queued_ms,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


class Outbox:
    """The queue file of one data directory; open it with :meth:`open`."""

    def __init__(self, data_dir: Path, entries: list[Queued], lock: IO[bytes]) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "queue.json"
        self._entries = entries
        self._lock = lock

    @classmethod
    def open(cls, data_dir: Path) -> Outbox:
        """Lock ``data_dir`` for this console and read its queue (ConsoleError if unusable)."""
        data_dir = data_dir.expanduser()
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock = (data_dir / "console.lock").open("ab")
        except OSError as exc:
            raise ConsoleError(f"cannot use the data directory {data_dir}: {exc}") from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise ConsoleError(
                f"another console is using {data_dir}: close it, or give this one its own --data"
            ) from None
        try:
            entries = _read(data_dir / "queue.json")
        except ConsoleError:
            lock.close()
            raise
        return cls(data_dir, entries, lock)

    def close(self) -> None:
        """Release the data directory."""
        if not self._lock.closed:
            self._lock.close()

    @property
    def entries(self) -> tuple[Queued, ...]:
        """Waiting commands, oldest first."""
        return tuple(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, action_id: object) -> bool:
        return any(e.command.action_id == action_id for e in self._entries)

    def add(self, command: Command, now_ms: int, error: str = "") -> None:
        """Queue ``command`` behind the others (once: its action_id is its identity)."""
        if command.action_id in self:
            return
        self._entries.append(Queued(command, now_ms, 0, error))
        self._save()

    def failed(self, action_id: str, error: str) -> None:
        """Note an unsuccessful attempt."""
        self._entries = [
            replace(e, attempts=e.attempts + 1, last_error=error)
            if e.command.action_id == action_id
            else e
            for e in self._entries
        ]
        self._save()

    def remove(self, action_id: str) -> None:
        """A server has it (or refused it for good): forget it."""
        self._entries = [e for e in self._entries if e.command.action_id != action_id]
        self._save()

    def _save(self) -> None:
        data = {"version": VERSION, "commands": [e.to_json() for e in self._entries]}
        temporary = self.path.with_suffix(".json.tmp")
        with temporary.open("w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _read(path: Path) -> list[Queued]:
    if not path.exists():
        return []
    hint = f"move {path} aside to start with an empty queue (its commands were not sent)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConsoleError(f"the queue file {path} is unreadable ({exc}): {hint}") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ConsoleError(f"the queue file {path} is not a version {VERSION} queue: {hint}")
    entries = []
    for item in data.get("commands") or []:
        try:
            if not isinstance(item, dict):
                raise BadCommand("not an object")
            entries.append(
                Queued(
                    Command.from_json(item.get("command")),
                    int(item.get("queued_ms") or 0),
                    int(item.get("attempts") or 0),
                    str(item.get("last_error") or ""),
                )
            )
        except (BadCommand, TypeError, ValueError) as exc:
            raise ConsoleError(f"the queue file {path} holds a bad entry ({exc}): {hint}") from None
    return entries
