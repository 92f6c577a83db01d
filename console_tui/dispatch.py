"""Where each command goes: the cloud, else the event relay, else the local queue.

:class:`Dispatcher` writes a confirmed command to the :class:`~console_tui.outbox.Outbox`
first, then sends the queue, oldest first, to its targets in order (the cloud, then the
event relay when one is known) with the same body; the first that takes it settles it and
it leaves the queue. One that no target can take stays, and so does everything behind it
(commands reach the servers in the order they were decided) until :meth:`Dispatcher.flush`
tries again.

Exactly once: every attempt carries the command's ``action_id``; the cloud answers a
replayed action with the recorded one, the relay stores it once, and a replayed race
command whose state the race already has is settled as done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from .client import ControlTarget
from .commands import Command, Delivery, Receipt
from .errors import Refused, SessionExpired, Unreachable
from .outbox import Outbox

__all__ = ["Dispatcher", "Settled"]

Settled = tuple[Command, Receipt]
"""A command and what became of it."""


class Dispatcher:
    """Sends commands; one send at a time (the queue keeps their order)."""

    def __init__(
        self, targets: Sequence[ControlTarget], outbox: Outbox, clock: Callable[[], int]
    ) -> None:
        if not targets:
            raise ValueError("the dispatcher needs at least one target (the cloud)")
        self.targets = list(targets)
        self.outbox = outbox
        self._clock = clock
        self._sending = asyncio.Lock()

    async def submit(self, command: Command) -> list[Settled]:
        """Queue ``command`` durably, then send the queue; what became of each command tried.

        Like a tracker's fixes, a command is stored before it is sent: if the console dies
        mid-send, it goes again on the next start, and the servers count it once.
        """
        async with self._sending:
            self.outbox.add(command, self._clock())
            settled = await self._flush()
            if not any(c.action_id == command.action_id for c, _ in settled):
                settled.append((command, self._queued(command)))
            return settled

    async def flush(self) -> list[Settled]:
        """Try the queued commands again, oldest first; what became of those settled."""
        async with self._sending:
            return await self._flush()

    async def _flush(self) -> list[Settled]:
        settled: list[Settled] = []
        for entry in self.outbox.entries:
            command = entry.command
            try:
                receipt = await self._deliver(command)
            except (Unreachable, SessionExpired) as exc:
                self.outbox.failed(command.action_id, exc.message)
                break
            except Refused as exc:
                receipt = Receipt(command.action_id, Delivery.REFUSED, exc.message)
            self.outbox.remove(command.action_id)
            settled.append((command, receipt))
        return settled

    async def _deliver(self, command: Command) -> Receipt:
        """The first target that takes it; Unreachable (every reason) when none does."""
        reasons: list[str] = []
        expired: SessionExpired | None = None
        for target in self.targets:
            try:
                return await target.submit(command)
            except SessionExpired as exc:
                # the login ended: the relay must not take what the cloud would refuse
                expired = exc
                break
            except Unreachable as exc:
                reasons.append(exc.message)
        if expired is not None:
            raise expired
        raise Unreachable("; ".join(reasons))

    def _queued(self, command: Command) -> Receipt:
        entry = next(e for e in self.outbox.entries if e.command.action_id == command.action_id)
        return Receipt(command.action_id, Delivery.QUEUED, entry.last_error)
