"""The pages' frame decoder (sync_protocol/web/frames.js) in Chromium against Python's.

The module is imported from the real relay's ``/static/shared/`` (the cloud serves the
same file at the same path) into a page of the relay, and
fed frames made by ``sync_protocol.frames``: the worked example of docs/live-frames.md,
hypothesis-generated snapshots and deltas, every truncation and many corruptions of
them, and a frame for each check the doc lists. What JavaScript decodes must equal what
Python decodes, and what Python refuses JavaScript refuses with the same reason.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Page

from sync_protocol.errors import DecodeError
from sync_protocol.frame_columns import CHAIN, DESC, PLAIN, SPARSE, SPARSE_CHAIN, put_column
from sync_protocol.frames import (
    BATTERY_PCT_MAX,
    BIB_MAX,
    FIX_AGE_S_MAX,
    GAP_DS_MAX,
    LAT_E7_MAX,
    LON_E7_MAX,
    MAX_FRAME_BYTES,
    MAX_SAFE,
    PENALTY_S_MAX,
    PROGRESS_M_MAX,
    SPEED_CMS_MAX,
    T_MS_MAX,
    U32_MAX,
    LiveFrame,
    RaceStatus,
    RiderState,
    RiderStatus,
    decode_frame,
    encode_delta,
    encode_snapshot,
    peek_kind,
)
from sync_protocol.wire import put_svarint, put_uvarint
from tests.cloud.conftest import start_cloud
from tests.edge_relay.harness import setup_relay_race, start_relay
from tests.web.browser import open_browser

DOCS = Path(__file__).resolve().parents[2] / "docs" / "live-frames.md"

# A list of steps, each (frame bytes, index of the earlier step whose frame is the base).
Steps = list[tuple[bytes, int | None]]

DECODE_IN_JS = """async (steps) => {
  const { DecodeError, decodeFrame, peekKind } = await import("/static/shared/frames.js");
  const bytes = (hex) => Uint8Array.from(hex.match(/../g) || [], (h) => parseInt(h, 16));
  const decoded = [];
  return steps.map(([hex, baseIndex]) => {
    const base = baseIndex === null ? null : decoded[baseIndex];
    try {
      const frame = decodeFrame(bytes(hex), base);
      if (peekKind(bytes(hex)) !== frame.kind) return { crash: "peekKind disagrees" };
      decoded.push(frame);
      return { frame };
    } catch (error) {
      decoded.push(null);
      return error instanceof DecodeError ? { error: error.reason } : { crash: String(error) };
    }
  });
}"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """A page of a real relay, from which /static/shared/frames.js is imported."""
    tmp = tmp_path_factory.mktemp("frames-js")
    cloud = start_cloud(tmp / "cloud")
    relay = None
    try:
        _, _, credential = setup_relay_race(cloud, tmp)
        relay = start_relay(tmp / "relay", cloud, credential)
        with open_browser() as browser:
            context = browser.new_context()
            chromium_page = context.new_page()
            chromium_page.goto(f"{relay.url}/healthz/live")
            yield chromium_page
            context.close()
    finally:
        if relay is not None:
            relay.stop()
        cloud.stop()


def as_json(frame: LiveFrame, data: bytes) -> dict[str, Any]:
    """A decoded frame the way frames.js returns it."""
    return {
        "kind": int(peek_kind(data)),
        "race_id": frame.race_id,
        "tick": frame.tick,
        "t_ms": frame.t_ms,
        "race_status": int(frame.race_status),
        "riders": [
            {
                "bib": r.bib,
                "status": int(r.status),
                "lat_e7": r.lat_e7,
                "lon_e7": r.lon_e7,
                "progress_m": r.progress_m,
                "speed_cms": r.speed_cms,
                "gap_ds": r.gap_ds,
                "fix_age_s": r.fix_age_s,
                "group": r.group,
                "penalty_s": r.penalty_s,
                "battery_pct": r.battery_pct,
                "charging": r.charging,
            }
            for r in frame.riders
        ],
    }


def in_python(steps: Steps) -> list[dict[str, Any]]:
    decoded: list[LiveFrame | None] = []
    results: list[dict[str, Any]] = []
    for data, base_index in steps:
        base = None if base_index is None else decoded[base_index]
        try:
            frame = decode_frame(data, base)
        except DecodeError as exc:
            decoded.append(None)
            results.append({"error": exc.reason})
        else:
            decoded.append(frame)
            results.append({"frame": as_json(frame, data)})
    return results


def in_js(page: Page, steps: Steps) -> list[dict[str, Any]]:
    payload = [[data.hex(), base] for data, base in steps]
    return page.evaluate(DECODE_IN_JS, payload)  # type: ignore[no-any-return]


def same_in_both(page: Page, steps: Steps) -> list[dict[str, Any]]:
    """Decode in Python and in Chromium; assert each step's outcome is the same."""
    expected, got = in_python(steps), in_js(page, steps)
    for (data, base), want, have in zip(steps, expected, got, strict=True):
        assert have == want, f"frame {data.hex()} (base step {base}): JS {have}, Python {want}"
    return expected


def docs_example(name: str) -> bytes:
    found = re.search(rf"<!-- example: {name} -->\s*```text\n(.*?)```", DOCS.read_text(), re.S)
    assert found, f"no {name} example in {DOCS}"
    return bytes.fromhex(found[1])


# -- the worked example -----------------------------------------------------------------


def test_the_worked_example_of_the_docs(page: Page) -> None:
    snapshot, delta = docs_example("snapshot"), docs_example("delta")
    first, second = same_in_both(page, [(snapshot, None), (delta, 0)])
    frame = first["frame"]
    assert (frame["race_id"], frame["tick"], frame["t_ms"]) == (4711, 7200, 1751366400000)
    assert [r["bib"] for r in frame["riders"]] == [5, 11, 23]
    five, eleven, twenty_three = frame["riders"]
    assert (five["gap_ds"], five["status"]) == (None, RiderStatus.NO_SIGNAL)
    assert (eleven["lat_e7"], eleven["progress_m"]) == (451234567, 92000)
    assert (twenty_three["penalty_s"], twenty_three["gap_ds"]) == (20, 8)
    assert (eleven["battery_pct"], eleven["charging"]) == (74, False)
    assert (twenty_three["battery_pct"], twenty_three["charging"]) == (55, True)
    assert (five["battery_pct"], five["charging"]) == (None, False)  # unknown, not empty
    moved = second["frame"]
    assert (moved["kind"], moved["tick"], moved["t_ms"]) == (2, 7201, 1751366401000)
    assert moved["riders"][1]["lat_e7"] == 451234567 + 61
    assert moved["riders"][0]["fix_age_s"] == 46
    assert moved["riders"][1]["battery_pct"] == 73


def mutations(data: bytes) -> list[bytes]:
    """Every truncation, a trailing byte, and each byte replaced by a few others."""
    out = [data[:n] for n in range(len(data))] + [data + b"\x00"]
    for i, byte in enumerate(data):
        for other in {0x00, 0x01, 0x7F, 0x80, 0xFF, byte ^ 0x01, byte ^ 0x40}:
            if other != byte:
                out.append(data[:i] + bytes([other]) + data[i + 1 :])
    return out


def test_every_truncation_and_corruption_gets_the_same_answer(page: Page) -> None:
    snapshot, delta = docs_example("snapshot"), docs_example("delta")
    steps: Steps = [(snapshot, None)]
    steps += [(bad, 0) for bad in mutations(delta)]
    steps += [(bad, None) for bad in mutations(snapshot)]
    results = same_in_both(page, steps)
    reasons = {r["error"] for r in results if "error" in r}
    assert {"truncated", "trailing", "bad-magic", "bad-version", "bad-kind"} <= reasons
    assert {"stale-base", "malformed", "out-of-range", "oversized"} <= reasons


# -- generated frames -------------------------------------------------------------------


@st.composite
def battery(draw: st.DrawFn) -> dict[str, Any]:
    """A tracker's battery: unknown, or a level with charging or not."""
    level = draw(st.none() | st.integers(0, BATTERY_PCT_MAX))
    return {"battery_pct": level, "charging": level is not None and draw(st.booleans())}


@st.composite
def riders(draw: st.DrawFn, max_riders: int = 40) -> tuple[RiderState, ...]:
    bibs = sorted(draw(st.sets(st.integers(1, BIB_MAX), max_size=max_riders)))
    return tuple(
        RiderState(
            **draw(battery()),
            bib=bib,
            status=draw(st.sampled_from(RiderStatus)),
            lat_e7=draw(st.integers(-LAT_E7_MAX, LAT_E7_MAX)),
            lon_e7=draw(st.integers(-LON_E7_MAX, LON_E7_MAX)),
            progress_m=draw(st.integers(-PROGRESS_M_MAX, PROGRESS_M_MAX)),
            speed_cms=draw(st.integers(0, SPEED_CMS_MAX)),
            gap_ds=draw(st.none() | st.integers(0, GAP_DS_MAX)),
            fix_age_s=draw(st.integers(0, FIX_AGE_S_MAX)),
            group=draw(st.integers(0, 255)),
            penalty_s=draw(st.integers(0, PENALTY_S_MAX) | st.just(0)),
        )
        for bib in bibs
    )


@st.composite
def frame_pairs(draw: st.DrawFn) -> tuple[LiveFrame, LiveFrame]:
    """A frame and a later one of the same race, some riders changed (or one gone)."""
    base = LiveFrame(
        race_id=draw(st.integers(0, U32_MAX)),
        tick=draw(st.integers(0, MAX_SAFE // 2)),
        t_ms=draw(st.integers(0, T_MS_MAX)),
        race_status=draw(st.sampled_from(RaceStatus)),
        riders=draw(riders()),
    )
    changed = draw(riders(max_riders=len(base.riders)))
    later = []
    for old, new in zip(base.riders, changed + base.riders[len(changed) :], strict=True):
        later.append(old if draw(st.booleans()) else dataclasses.replace(new, bib=old.bib))
    if later and draw(st.integers(0, 9)) == 0:
        later.pop(draw(st.integers(0, len(later) - 1)))
    frame = LiveFrame(
        race_id=base.race_id,
        tick=draw(st.integers(base.tick, MAX_SAFE)),
        t_ms=draw(st.integers(0, T_MS_MAX)),
        race_status=draw(st.sampled_from(RaceStatus)),
        riders=tuple(later),
    )
    return base, frame


@settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(pair=frame_pairs())
def test_generated_snapshots_and_deltas_decode_as_in_python(
    page: Page, pair: tuple[LiveFrame, LiveFrame]
) -> None:
    base, frame = pair
    snapshot, delta = encode_snapshot(base), encode_delta(base, frame)
    results = same_in_both(page, [(snapshot, None), (delta, 0), (encode_snapshot(frame), None)])
    assert results[0]["frame"] == as_json(base, snapshot)
    assert results[1]["frame"] == as_json(frame, delta)


# -- each check the doc lists -----------------------------------------------------------

FIELDS = (
    ("lat_e7", CHAIN),
    ("lon_e7", CHAIN),
    ("progress_m", DESC),
    ("speed_cms", CHAIN),
    ("gap", CHAIN),
    ("fix_age_s", PLAIN),
    ("group", SPARSE_CHAIN),
    ("status", SPARSE),
    ("penalty_s", SPARSE),
    ("battery", PLAIN),
    ("charging", SPARSE),
)


def header(kind: int, race_id: int = 7, tick: int = 100) -> bytearray:
    out = bytearray(b"GL\x02")
    out.append(kind)
    put_uvarint(out, race_id)
    put_uvarint(out, tick)
    return out


def raw_snapshot(
    riders: list[dict[str, int]], *, race_id: int = 7, tick: int = 100, race_status: int = 1
) -> bytes:
    """A snapshot written without the encoder's checks (riders in wire order)."""
    out = header(1, race_id, tick)
    put_uvarint(out, 1_751_366_400_000)
    out.append(race_status)
    put_uvarint(out, len(riders))
    put_column(out, CHAIN, [r["bib"] for r in riders])
    for name, coding in FIELDS:
        put_column(out, coding, [r.get(name, 0) for r in riders])
    return bytes(out)


def raw_delta(
    base_count: int, body: bytes, *, back: int = 1, tick: int = 101, dt_ms: int = 1000
) -> bytes:
    out = header(2, tick=tick)
    put_uvarint(out, back)
    put_svarint(out, dt_ms)
    out.append(1)
    put_uvarint(out, base_count)
    return bytes(out) + body


def varint(value: int) -> bytes:
    out = bytearray()
    put_uvarint(out, value)
    return bytes(out)


TWO = [{"bib": 3, "progress_m": 500}, {"bib": 9, "progress_m": 400}]
ONE_ZEROS = raw_snapshot([{"bib": 4}])  # every column of one rider is a single 00 byte


def test_each_check_of_the_doc_is_made_with_its_reason(page: Page) -> None:
    base = raw_snapshot(TWO)  # step 0: the base of the deltas below
    extremes = LiveFrame(
        race_id=U32_MAX,
        tick=MAX_SAFE,
        t_ms=T_MS_MAX,
        race_status=RaceStatus.RESULTS_PUBLISHED,
        riders=(
            RiderState(
                bib=1,
                status=RiderStatus.RACING,
                lat_e7=LAT_E7_MAX,
                lon_e7=-LON_E7_MAX,
                progress_m=PROGRESS_M_MAX,
                speed_cms=0,
            ),
            RiderState(
                bib=BIB_MAX,
                status=RiderStatus.DSQ,
                lat_e7=-LAT_E7_MAX,
                lon_e7=LON_E7_MAX,
                progress_m=-PROGRESS_M_MAX,
                speed_cms=SPEED_CMS_MAX,
                gap_ds=GAP_DS_MAX,
                fix_age_s=FIX_AGE_S_MAX,
                group=255,
                penalty_s=PENALTY_S_MAX,
                battery_pct=BATTERY_PCT_MAX,
                charging=True,
            ),
        ),
    )
    ahead = ONE_ZEROS[:-5]  # up to the sparse columns (group, status, penalty)
    tail = b"\x00\x00"  # the battery and charging columns of one rider
    cases: list[tuple[bytes, int | None, str | None]] = [
        (base, None, None),
        (encode_snapshot(extremes), None, None),
        (b"", None, "truncated"),
        (b"GL", None, "truncated"),
        (b"GX\x01\x01", None, "bad-magic"),
        (b"GL\x01\x01", None, "bad-version"),
        (b"GL\x03\x01", None, "bad-version"),
        (b"GL\x02\x03", None, "bad-kind"),
        (base + bytes(MAX_FRAME_BYTES), None, "oversized"),
        (b"GL\x02\x01" + varint(U32_MAX + 1) + b"\x00", None, "oversized"),
        (b"GL\x02\x01\x07" + varint(MAX_SAFE + 1), None, "oversized"),
        (b"GL\x02\x01\x07" + b"\x80" * 10 + b"\x01", None, "malformed"),
        (bytes(header(1)) + varint(T_MS_MAX + 1) + b"\x01\x00", None, "oversized"),
        (bytes(header(1)) + b"\x00\x05\x00", None, "malformed"),  # race status 5
        (bytes(header(1)) + b"\x00\x01" + varint(256), None, "oversized"),
        (raw_snapshot([{"bib": 5}, {"bib": 5}]), None, "malformed"),  # repeated bib
        (raw_snapshot([{"bib": 0}]), None, "out-of-range"),
        (raw_snapshot([{"bib": 2, "lat_e7": LAT_E7_MAX + 1}]), None, "out-of-range"),
        (raw_snapshot([{"bib": 2, "gap": -1}]), None, "out-of-range"),
        (raw_snapshot([{"bib": 2, "status": 7}]), None, "malformed"),
        (raw_snapshot([{"bib": 2, "penalty_s": PENALTY_S_MAX + 1}]), None, "out-of-range"),
        (raw_snapshot([{"bib": 2, "battery": 102}]), None, "out-of-range"),  # 101 %
        (raw_snapshot([{"bib": 2, "battery": 51, "charging": 2}]), None, "out-of-range"),
        (raw_snapshot([{"bib": 2, "charging": 1}]), None, "out-of-range"),  # battery unknown
        (raw_snapshot([{"bib": 2, "battery": 1, "charging": 1}]), None, None),  # 0 %, charging
        (ahead + b"\x01\x00\x00\x00" + tail, None, "malformed"),  # a sparse value of 0
        (ahead + b"\x01\x01\x05\x00" + tail, None, "malformed"),  # a sparse index past n
        (ahead + b"\x02\x00\x01\x00\x01\x00" + tail, None, "oversized"),  # more than n
        (ONE_ZEROS + b"\x00", None, "trailing"),
        (raw_delta(2, b"\x00"), None, "stale-base"),  # no base
        (raw_delta(2, b"\x00"), 0, None),  # nothing changed
        (raw_delta(2, b"\x00", back=2), 0, "stale-base"),  # another tick
        (raw_delta(3, b"\x00"), 0, "stale-base"),  # another rider count
        (b"GL\x02\x02\x08\x65\x01\xd0\x0f\x01\x02\x00", 0, "stale-base"),  # another race
        (raw_delta(2, b"\x00", back=102), 0, "oversized"),  # back past tick 0
        (raw_delta(2, b"\x04"), 0, "malformed"),  # a bit past the last rider
        (raw_delta(2, b"\x01\x00"), 0, "malformed"),  # field mask 0
        (raw_delta(2, b"\x01" + varint(2048) + b"\x02"), 0, "malformed"),  # bit 11
        (raw_delta(2, b"\x01" + varint(512) + b"\x02"), 0, None),  # bib 3's battery known
        (raw_delta(2, b"\x01" + varint(1024) + b"\x02"), 0, "out-of-range"),  # charging, no
        (raw_delta(2, b"\x01" + varint(512) + b"\xcc\x01"), 0, "out-of-range"),  # 102 %
        (raw_delta(2, b"\x01\x01\x00"), 0, "malformed"),  # a change of 0
        (raw_delta(2, b"\x01\x01\x02"), 0, None),  # bib 3 one unit further north
        (raw_delta(2, b"\x01\x01\x02\x00"), 0, "trailing"),
        (raw_delta(2, b"\x01\x80\x01\x0e"), 0, "malformed"),  # status 0 + 7
        (raw_delta(2, b"\x02\x04" + varint(2 * PROGRESS_M_MAX)), 0, "out-of-range"),
        (raw_delta(2, b"\x00", dt_ms=-1_751_366_400_001), 0, "out-of-range"),  # t_ms < 0
        (raw_delta(2, b"\x01\x01"), 0, "truncated"),
    ]
    steps: Steps = [(data, base_step) for data, base_step, _ in cases]
    results = same_in_both(page, steps)
    for (data, _, reason), result in zip(cases, results, strict=True):
        assert result.get("error") == reason, f"{data[:40].hex()}: {result}"
    assert results[1]["frame"] == as_json(extremes, encode_snapshot(extremes))
