"""Benchmark of the sans-IO protocol core: wire size, codec speed, verification, frames.

    python -m bench.protocol --json     # full run
    python -m bench.protocol --quick    # smaller, under 30 s

Prints one JSON object: {"bench": "protocol", "figures": {...}, "targets": {...}, "met": bool}.
Everything runs on one core (this process, one thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.batch import decode_batch, encode_batch, seal
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import device_id, extend_all, genesis, public_key_bytes
from sync_protocol.frames import (
    LiveFrame,
    RaceStatus,
    RiderState,
    RiderStatus,
    encode_delta,
    encode_snapshot,
)
from sync_protocol.receiver import Receiver
from tracker_app.simulate import START_MS, realistic_track

TARGETS = {"bytes_per_fix_60": 12.0, "verify_fixes_per_s_batch60": 30_000.0}


def rate(work: Callable[[], int], min_seconds: float) -> float:
    """Items per second of ``work`` (which returns how many items it did), repeated."""
    done, start = 0, time.perf_counter()
    while True:
        done += work()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.protocol", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--quick", action="store_true", help="smaller run (under 30 s)")
    args = parser.parse_args(argv)
    seconds = 0.5 if args.quick else 2.0
    fixes_n = 1_200 if args.quick else 3_600

    def log(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr)

    cloud = Ed25519PrivateKey.generate()
    key = Ed25519PrivateKey.generate()
    public = public_key_bytes(key)
    dev = device_id(public)
    cert = DeviceCertificate.issue(cloud, public, 1, (1,), START_MS, START_MS + 86_400_000)
    track = realistic_track(fixes_n)
    hashes = [genesis(dev), *extend_all(genesis(dev), track)]

    def batches(size: int) -> list[bytes]:
        return [
            encode_batch(seal(dev, track[i : i + size], hashes[i], key=key))
            for i in range(0, len(track), size)
        ]

    log("wire size ...")
    figures: dict[str, float] = {}
    for size in (1, 10, 60, 600):
        total = sum(len(b) for b in batches(size))
        figures[f"bytes_per_fix_{size}"] = round(total / len(track), 2)

    log("codec speed ...")
    signed60 = [seal(dev, track[i : i + 60], hashes[i], key=key) for i in range(0, fixes_n, 60)]
    wire60 = [encode_batch(b) for b in signed60]
    figures["encode_fixes_per_s"] = round(
        rate(lambda: sum(len(encode_batch(b)) * 0 + len(b.fixes) for b in signed60), seconds)
    )
    figures["decode_fixes_per_s"] = round(
        rate(lambda: sum(len(decode_batch(w).fixes) for w in wire60), seconds)
    )

    def verify_all(wire: list[bytes], mac_key: bytes | None = None) -> int:
        rx = Receiver.for_certificate(cert)
        rx.session_key = mac_key
        for data in wire:
            rx.receive(decode_batch(data))
        return fixes_n

    log("verification ...")
    figures["verify_fixes_per_s_batch60"] = round(rate(lambda: verify_all(wire60), seconds))
    wire1 = batches(1)
    figures["verify_fixes_per_s_batch1"] = round(rate(lambda: verify_all(wire1), seconds))
    session = b"k" * 32
    live = [
        encode_batch(
            seal(dev, [f], hashes[f.seq - 1], key=key)
            if f.seq % 10 == 0
            else seal(dev, [f], hashes[f.seq - 1], session_key=session)
        )
        for f in track
    ]
    figures["verify_fixes_per_s_live_mac_seal10"] = round(
        rate(lambda: verify_all(live, session), seconds)
    )

    log("live frames ...")
    frame = race_frame(0)
    nxt = race_frame(1)
    figures["frame_bytes_snapshot_50"] = len(encode_snapshot(frame))
    figures["frame_bytes_delta_50"] = len(encode_delta(frame, nxt))
    per_s = rate(lambda: (encode_snapshot(frame), 1)[1], seconds)
    figures["frame_encode_us_snapshot_50"] = round(1e6 / per_s, 1)
    per_s = rate(lambda: (encode_delta(frame, nxt), 1)[1], seconds)
    figures["frame_encode_us_delta_50"] = round(1e6 / per_s, 1)

    met = (
        figures["bytes_per_fix_60"] <= TARGETS["bytes_per_fix_60"]
        and figures["verify_fixes_per_s_batch60"] >= TARGETS["verify_fixes_per_s_batch60"]
    )
    result = {
        "bench": "protocol",
        "quick": args.quick,
        "figures": figures,
        "targets": {
            "bytes_per_fix_60": f"<= {TARGETS['bytes_per_fix_60']:g}",
            "verify_fixes_per_s_batch60": f">= {TARGETS['verify_fixes_per_s_batch60']:.0f}",
        },
        "met": met,
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def race_frame(tick: int) -> LiveFrame:
    """A 50-rider race tick: a breakaway, a bunched peloton and stragglers."""
    groups = {bib: 0 if bib <= 4 else 1 if bib <= 40 else 2 for bib in range(1, 51)}
    progress = {b: (42_000, 41_200, 39_000)[g] - b * 7 + tick * 11 for b, g in groups.items()}
    lead = max(progress.values())
    riders = [
        RiderState(
            bib=bib,
            status=RiderStatus.RACING,
            lat_e7=450_000_000 + progress[bib] * 70 + bib * 13,
            lon_e7=60_000_000 + progress[bib] * 90 - bib * 11,
            progress_m=progress[bib],
            speed_cms=1_100 + bib * 3,
            gap_ds=(lead - progress[bib]) * 10 // 11,
            fix_age_s=bib % 3,
            group=groups[bib],
            battery_pct=40 + bib * 37 % 56,  # trackers between 40 and 95 %
            charging=bib == 7,  # one on a power bank
        )
        for bib in range(1, 51)
    ]
    return LiveFrame(
        race_id=1,
        tick=tick,
        t_ms=START_MS + tick * 1000,
        race_status=RaceStatus.LIVE,
        riders=tuple(riders),
    )


if __name__ == "__main__":
    raise SystemExit(main())
