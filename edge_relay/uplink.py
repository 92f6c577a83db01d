"""The relay's link to the cloud: race configuration, store-and-forward, live positions.

Three loops share one HTTP client (HTTP/2 when the cloud offers it):

* **config** — ``GET /api/relay/config`` every ``config_every_s``; each answer is saved
  in the relay's store, so a restarted relay runs its races with no uplink. Each time
  the relay also reports its health and public addresses (``POST /api/relay/status``)
  for the back office and for spectators' pages that look for a relay of a race, with
  the newest battery status of each of its trackers (``devices``), which the cloud puts
  on the race's live stream.
* **forward** — the outbox (verified runs) goes to ``POST /api/ingest`` oldest first, as
  the riders' original signed batches; a run leaves the outbox only when the cloud's
  reply for it says the fixes are durable there (accepted or duplicate). The outbox is
  the resumable cursor: a restart simply continues with what is left. Network errors
  and 5xx back off exponentially with full jitter; a batch the cloud refuses is kept in
  the store with its reason (counted, never silently dropped) and no longer retried.
* **race control** — officials' commands the relay took while the cloud was away go to
  the cloud's own endpoints first (on the official's behalf; idempotent by action_id).
* **live** — per served race, ``GET /api/races/{id}/live`` (NDJSON: snapshot, then
  fixes, fix, battery, race and action messages), so spectators here also see riders
  connected to other relays of the race (every fix they uploaded, so checkpoint passages
  in a catch-up after a gap are timed here too), and officials' actions taken in the
  cloud. Reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

from sync_protocol.batch import Batch, encode_batch
from sync_protocol.framing import encode_frames

from .commit import GroupCommitter
from .control import Command
from .store import Reads, Run, Writes

log = logging.getLogger("gruppetto.relay.uplink")

FORWARD_RUNS = 256
"""Most runs in one forwarding request."""
FORWARD_GATHER_S = 0.15
"""Woken by a new upload, the forwarder waits this long before it reads the outbox: the
riders' fixes come in a burst on the second, and the burst goes in one post to the cloud
instead of several made in the middle of it, on the loop the uploads need."""
DURABLE = frozenset({"accepted", "duplicate"})
"""Cloud outcomes that mean the fixes are stored there."""


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter."""

    base_s: float = 0.5
    """First delay ceiling."""
    cap_s: float = 30.0
    """Largest delay ceiling."""
    failures: int = 0
    """Consecutive failures."""

    def next_delay(self) -> float:
        """Record a failure and return how long to wait."""
        self.failures += 1
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.failures, 20))
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Record a success."""
        self.failures = 0


@dataclass(slots=True)
class UplinkStatus:
    """What the uplink is doing (health, metrics, the console)."""

    state: str = "down"
    """``up`` after the last request succeeded, ``down`` after it failed."""
    last_error: str = ""
    """Why the last request failed."""
    forwarded_runs: int = 0
    """Runs the cloud acknowledged."""
    forwarded_fixes: int = 0
    """Fixes in those runs."""
    refused_runs: int = 0
    """Runs the cloud refused for good."""
    config_version: int = 0
    """Configurations received."""
    commands_forwarded: int = 0
    """Officials' commands handed to the cloud."""


class Uplink:
    """Talks to the cloud on the relay's behalf."""

    def __init__(
        self,
        cloud_url: str,
        credential: str,
        committer: GroupCommitter,
        reads: Reads,
        *,
        on_config: Callable[[dict[str, Any]], None],
        on_live: Callable[[int, dict[str, Any]], None],
        report: Callable[[], dict[str, Any]] | None = None,
        verify: bool | str = True,
        config_every_s: float = 15.0,
    ) -> None:
        self.committer, self.reads = committer, reads
        self.on_config, self.on_live, self.report = on_config, on_live, report
        self.config_every_s = config_every_s
        self.status = UplinkStatus()
        self.relay_id: int | None = None
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            base_url=cloud_url.rstrip("/"),
            headers={"Authorization": f"Relay {credential}"},
            timeout=httpx.Timeout(30.0, connect=5.0),
            verify=verify,
        )
        self._live: dict[int, asyncio.Task[None]] = {}
        self.jwks: dict[str, Any] | None = reads.config("jwks")
        """The cloud's token-signing keys (to check officials' tokens offline)."""

    def wake(self) -> None:
        """New runs are in the outbox: forward now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Run the config and forward loops until cancelled."""
        try:
            await asyncio.gather(self._config_loop(), self._forward_loop())
        finally:
            for task in self._live.values():
                task.cancel()
            await asyncio.gather(*self._live.values(), return_exceptions=True)
            await self._client.aclose()

    def follow(self, race_ids: set[int]) -> None:
        """Subscribe to the cloud's live stream of exactly these races."""
        for race_id in set(self._live) - race_ids:
            self._live.pop(race_id).cancel()
        for race_id in race_ids - set(self._live):
            self._live[race_id] = asyncio.create_task(self._live_loop(race_id))

    # -- configuration ----------------------------------------------------------------

    async def _config_loop(self) -> None:
        backoff = Backoff()
        while True:
            try:
                response = await self._client.get("/api/relay/config")
                response.raise_for_status()
                doc = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                self._down(f"configuration: {exc}")
                await asyncio.sleep(min(self.config_every_s, backoff.next_delay()))
                continue
            backoff.reset()
            self._up()
            self.relay_id = int(doc["relay"]["id"])
            await self.committer.run(partial(_save_config, key="relay", doc=doc))
            try:
                keys = await self._client.get("/.well-known/jwks.json")
                keys.raise_for_status()
                self.jwks = keys.json()
                await self.committer.run(partial(_save_config, key="jwks", doc=self.jwks))
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("cloud keys not fetched", extra={"detail": str(exc)})
            self.status.config_version += 1
            self.on_config(doc)
            if self.report is not None:
                try:
                    sent = await self._client.post("/api/relay/status", json=self.report())
                    sent.raise_for_status()
                except httpx.HTTPError as exc:
                    log.info("status report not sent", extra={"detail": str(exc)})
            await asyncio.sleep(self.config_every_s)

    # -- store and forward ------------------------------------------------------------

    async def _forward_loop(self) -> None:
        backoff = Backoff()
        while True:
            commands = await asyncio.to_thread(self.reads.pending_commands)
            if commands:
                try:
                    await self.forward_commands([Command.from_row(r) for r in commands])
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self._down(f"forwarding race control: {exc}")
                    await asyncio.sleep(backoff.next_delay())
                    continue
            runs = await asyncio.to_thread(self.reads.pending_runs, FORWARD_RUNS)
            if not runs:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                    await asyncio.sleep(FORWARD_GATHER_S)
                continue
            try:
                await self.forward(runs)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                self._down(f"forwarding: {exc}")
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()

    async def forward(self, runs: list[Run]) -> None:
        """Send runs to the cloud and settle the outbox from its per-batch replies."""
        batches = await asyncio.to_thread(self._batches, runs)
        response = await self._client.post(
            "/api/ingest",
            content=encode_frames(batches),
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code >= 500 or response.status_code == 429:
            raise httpx.HTTPStatusError(
                f"cloud answered {response.status_code}",
                request=response.request,
                response=response,
            )
        response.raise_for_status()
        results = response.json()["results"]
        if len(results) != len(runs):
            raise ValueError(f"cloud answered {len(results)} results for {len(runs)} batches")
        self._up()
        done: list[int] = []
        refused: list[tuple[int, str]] = []
        acked: dict[bytes, int] = {}
        fixes = 0
        for run, result in zip(runs, results, strict=True):
            outcome = result.get("outcome")
            if outcome in DURABLE:
                done.append(run.id)
                fixes += run.last_seq - run.first_seq + 1
            elif outcome == "rejected":
                refused.append((run.id, str(result.get("reason", "rejected"))))
                log.warning(
                    "cloud refused a run",
                    extra={"device": run.device_id.hex(), "reason": result.get("reason")},
                )
            ack = result.get("ack")
            if ack:
                acked[run.device_id] = max(acked.get(run.device_id, 0), int(ack["acked_seq"]))

        def settle(w: Writes) -> None:
            w.forwarded(done)
            for run_id, reason in refused:
                w.refused(run_id, reason)
            for device, seq in acked.items():
                w.cloud_acked(device, seq)

        await self.committer.run(settle)
        self.status.forwarded_runs += len(done)
        self.status.forwarded_fixes += fixes
        self.status.refused_runs += len(refused)

    async def forward_commands(self, commands: list[Command]) -> None:
        """Send officials' queued commands to the cloud, on their behalf, exactly once."""
        for cmd in commands:
            who = cmd.official
            body = {**cmd.body, "on_behalf_of": {"id": who.id, "name": who.name, "role": who.role}}
            response = await self._client.post(cmd.path, json=body)
            if response.status_code >= 500 or response.status_code == 429:
                raise httpx.HTTPStatusError(
                    f"cloud answered {response.status_code}",
                    request=response.request,
                    response=response,
                )
            if response.status_code < 300:
                outcome = "done"
            elif response.status_code == 409 and cmd.kind == "state":
                outcome = "done (the race had already moved on)"
            else:
                outcome = f"refused {response.status_code}: {response.text[:200]}"
                log.warning("cloud refused a command", extra={"action_id": cmd.action_id})
            await self.committer.run(
                partial(_command_done, action_id=cmd.action_id, outcome=outcome)
            )
            self.status.commands_forwarded += 1

    def _batches(self, runs: list[Run]) -> list[bytes]:
        out = []
        for run in runs:
            fixes = self.reads.fixes(run.device_id, run.first_seq, run.last_seq)
            batch = Batch(run.device_id, tuple(fixes), run.signature, prev_hash=run.prev_hash)
            out.append(encode_batch(batch))
        return out

    # -- live positions from other relays -----------------------------------------------

    async def _live_loop(self, race_id: int) -> None:
        backoff = Backoff()
        while True:
            try:
                async with self._client.stream(
                    "GET", f"/api/races/{race_id}/live", timeout=httpx.Timeout(None, connect=5.0)
                ) as response:
                    response.raise_for_status()
                    backoff.reset()
                    async for line in response.aiter_lines():
                        if line:
                            self._live_message(race_id, json.loads(line))
            except (httpx.HTTPError, ValueError) as exc:
                log.info("live stream ended", extra={"race": race_id, "detail": str(exc)})
            await asyncio.sleep(backoff.next_delay())

    def _live_message(self, race_id: int, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("fix", "fixes", "battery") and message.get("via") == self.relay_id:
            return  # our own riders, already scored here
        if kind == "snapshot":
            message = {
                **message,
                "riders": [r for r in message.get("riders", []) if r.get("via") != self.relay_id],
                "batteries": [
                    b for b in message.get("batteries", []) if b.get("via") != self.relay_id
                ],
            }
        if kind in ("snapshot", "fix", "fixes", "battery", "race", "action"):
            self.on_live(race_id, message)

    def _up(self) -> None:
        self.status.state = "up"
        self.status.last_error = ""

    def _down(self, why: str) -> None:
        if self.status.state != "down" or self.status.last_error != why:
            log.warning("uplink down", extra={"detail": why})
        self.status.state = "down"
        self.status.last_error = why


def _save_config(w: Writes, *, key: str, doc: dict[str, Any]) -> None:
    w.put_config(key, doc)


def _command_done(w: Writes, *, action_id: str, outcome: str) -> None:
    w.command_done(action_id, outcome)
