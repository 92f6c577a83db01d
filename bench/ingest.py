"""Benchmark of the relay's ingest: verified, durable fixes per second in one process.

    python -m bench.ingest --json     # full run
    python -m bench.ingest --quick    # smaller, under 30 s

Runs the relay's real ingest path — :class:`edge_relay.ingest.RelayIngest` on the group
committer (one writer thread, SQLite WAL; every ack waits for the fsync covering its
commit, which a second thread runs for many commits at once) — with many concurrent
uploads on one asyncio loop, as the HTTP/3 handlers call it. Two workloads (DESIGN.md
targets):

* **catch-up**: 50 riders each re-sending a backlog in signed 60-fix batches (10 per
  request), target ≥ 20,000 fixes/s;
* **live**: 50 riders x 100 races (5,000 devices; ``--quick``: 1,000) each sending its
  newest fix as a 1-fix batch, in the protocol's live mode (session MAC, one signed head
  every 10 fixes), target ≥ 5,000 fixes/s.

The QUIC transport is not in these figures (``bench.sync`` measures an upload end to end
over loopback HTTP/3). Prints one JSON object with figures, targets and ``met``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_relay.commit import GroupCommitter
from edge_relay.ingest import RelayIngest
from sync_protocol.batch import encode_batch, seal
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import device_id, extend_all, genesis, public_key_bytes
from sync_protocol.framing import encode_frames
from sync_protocol.session import SessionHello
from tracker_app.simulate import START_MS, realistic_track

TARGETS = {"catchup_fixes_per_s": 20_000.0, "live_fixes_per_s": 5_000.0}
SEAL_EVERY = 10


class Device:
    """A simulated tracker: key, certificate, session, and its fixes sealed in advance."""

    def __init__(self, cloud: Ed25519PrivateKey, race_id: int, count: int, seed: int) -> None:
        self.key = Ed25519PrivateKey.generate()
        public = public_key_bytes(self.key)
        self.id = device_id(public)
        self.cert = DeviceCertificate.issue(
            cloud, public, seed + 1, (race_id,), START_MS - 3_600_000, START_MS + 86_400_000
        )
        self.session_key = os.urandom(32)
        self.fixes = realistic_track(count, seed=seed)
        self.hashes = [genesis(self.id), *extend_all(genesis(self.id), self.fixes)]

    def hello(self, now_ms: int) -> bytes:
        return SessionHello.create(self.key, self.cert, self.session_key, now_ms).encode()

    def batch(self, first: int, last: int, *, mac: bool = False) -> bytes:
        fixes = self.fixes[first - 1 : last]
        prev = self.hashes[first - 1]
        if mac:
            return encode_batch(seal(self.id, fixes, prev, session_key=self.session_key))
        return encode_batch(seal(self.id, fixes, prev, key=self.key))


async def run_uploads(ingest: RelayIngest, bodies: list[list[bytes]]) -> int:
    """Each inner list is one connection's requests, sent one after another."""

    async def connection(requests: list[bytes]) -> int:
        stored = 0
        for body in requests:
            outcome = await ingest.upload(body)
            if any(r.refused for r in outcome.results):
                reasons = {r.reason for r in outcome.results if r.refused}
                raise RuntimeError(f"batches refused: {reasons}")
            stored += outcome.fixes
        return stored

    return sum(await asyncio.gather(*(connection(r) for r in bodies)))


def measure(
    directory: Path, devices: list[Device], bodies: list[list[bytes]], log: Callable[[str], None]
) -> tuple[float, int, int, int]:
    """(fixes/s, fixes stored, commits, fsyncs) for one workload on a fresh store."""
    committer = GroupCommitter(directory / "relay.db")
    try:
        now = START_MS
        ingest = RelayIngest(committer, ISSUER.public_key(), frozenset(range(1, 101)), lambda: now)

        async def go() -> tuple[float, int]:
            for device in devices:  # sessions first, not timed
                await ingest.hello(device.hello(now))
            started = time.perf_counter()
            stored = await run_uploads(ingest, bodies)
            return time.perf_counter() - started, stored

        elapsed, stored = asyncio.run(go())
        stats = committer.stats
        log(f"  {stored:,} fixes in {elapsed:.2f} s")
        log(f"  {stats.commits:,} commits, {stats.syncs:,} fsyncs")
        return stored / elapsed, stored, stats.commits, stats.syncs
    finally:
        committer.close()


ISSUER = Ed25519PrivateKey.generate()


def catchup_workload(riders: int, backlog: int) -> tuple[list[Device], list[list[bytes]]]:
    devices = [Device(ISSUER, 1, backlog, seed) for seed in range(riders)]
    bodies = []
    for device in devices:
        batches = [device.batch(f, min(f + 59, backlog)) for f in range(1, backlog + 1, 60)]
        bodies.append([encode_frames(batches[i : i + 10]) for i in range(0, len(batches), 10)])
    return devices, bodies


def live_workload(devices_n: int, ticks: int) -> tuple[list[Device], list[list[bytes]]]:
    devices = [Device(ISSUER, 1 + i % 100, ticks, 1_000 + i) for i in range(devices_n)]
    bodies = []
    for device in devices:
        requests = []
        for seq in range(1, ticks + 1):
            mac = seq > 1 and seq % SEAL_EVERY != 0
            requests.append(encode_frames([device.batch(seq, seq, mac=mac)]))
        bodies.append(requests)
    return devices, bodies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--quick", action="store_true", help="smaller run (under 30 s)")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr)

    riders, backlog = (50, 1_200) if args.quick else (50, 3_600)
    live_devices, ticks = (1_000, 10) if args.quick else (5_000, 10)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        log(f"catch-up: {riders} riders x {backlog} fixes in signed 60-fix batches")
        devices, bodies = catchup_workload(riders, backlog)
        (Path(tmp) / "a").mkdir()
        rate, stored, commits, syncs = measure(Path(tmp) / "a", devices, bodies, log)
        figures.update(
            catchup_fixes_per_s=round(rate),
            catchup_fixes=stored,
            catchup_commits=commits,
            catchup_fsyncs=syncs,
        )
        log(f"live: {live_devices} devices x {ticks} 1-fix batches (MAC, signed every 10)")
        devices, bodies = live_workload(live_devices, ticks)
        (Path(tmp) / "b").mkdir()
        rate, stored, commits, syncs = measure(Path(tmp) / "b", devices, bodies, log)
        figures.update(
            live_fixes_per_s=round(rate), live_fixes=stored, live_commits=commits, live_fsyncs=syncs
        )
    met = all(figures[k] >= v for k, v in TARGETS.items())
    result = {
        "bench": "ingest",
        "quick": args.quick,
        "figures": figures,
        "targets": TARGETS,
        "met": met,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
