"""Trackers' battery levels in the live race model: standings, frames, staleness, alerts."""

from __future__ import annotations

import pytest

from sync_protocol.errors import LocalProtocolError
from sync_protocol.frames import decode_frame, encode_snapshot
from sync_protocol.race.scoring import AlertKind, ScoringSettings
from tests.sync_protocol.test_race_scoring import SEC, T0, fix, scorer_for


def test_a_status_shows_in_standings_and_frames_and_unknown_is_not_empty() -> None:
    scorer = scorer_for(3)
    for rider in (100, 101, 102):
        fix(scorer, rider, T0, 0.0)
    assert scorer.on_status(100, T0, 74, False)
    assert scorer.on_status(101, T0, 0, True)
    rows = {s.rider_id: s for s in scorer.standings(T0 + SEC)}
    assert (rows[100].battery_pct, rows[100].charging) == (74, False)
    assert (rows[101].battery_pct, rows[101].charging) == (0, True)
    assert (rows[102].battery_pct, rows[102].charging) == (None, False)
    frame = decode_frame(encode_snapshot(scorer.frame(T0 + SEC)))
    assert [(r.bib, r.battery_pct, r.charging) for r in frame.riders] == [
        (1, 74, False),
        (2, 0, True),
        (3, None, False),
    ]


def test_only_a_newer_status_counts() -> None:
    scorer = scorer_for(1)
    assert scorer.on_status(100, T0 + 60 * SEC, 70, False)
    assert not scorer.on_status(100, T0 + 60 * SEC, 10, False)  # the same time again
    assert not scorer.on_status(100, T0, 90, False)  # overtaken by a newer one
    assert scorer.standings(T0 + 61 * SEC)[0].battery_pct == 70


def test_an_old_status_is_not_shown() -> None:
    scorer = scorer_for(1, settings=ScoringSettings(battery_stale_ms=120_000))
    scorer.on_status(100, T0, 55, True)
    assert scorer.standings(T0 + 119 * SEC)[0].battery_pct == 55
    row = scorer.standings(T0 + 120 * SEC)[0]
    assert (row.battery_pct, row.charging) == (None, False)
    assert scorer.frame(T0 + 120 * SEC).riders[0].battery_pct is None


def test_low_battery_alert_while_racing_cleared_by_plugging_in() -> None:
    scorer = scorer_for(2)
    for second in range(0, 121):  # both ride on; rider 1's tracker runs low
        for rider in (100, 101):
            fix(scorer, rider, T0 + second * SEC, 10.0 * second)
    scorer.on_status(100, T0, 25, False)
    scorer.on_status(101, T0, 50, False)
    assert scorer.alerts(T0 + SEC) == []
    scorer.on_status(100, T0 + 30 * SEC, 19, False)
    scorer.on_status(100, T0 + 60 * SEC, 18, False)
    (alert,) = scorer.alerts(T0 + 60 * SEC)
    assert (alert.kind, alert.rider_id, alert.bib) == (AlertKind.LOW_BATTERY, 100, 1)
    assert alert.since_ms == T0 + 30 * SEC  # since it first dropped below 20 %
    assert alert.detail == "tracker battery at 18%"
    scorer.on_status(100, T0 + 90 * SEC, 18, True)  # plugged into a power bank
    assert scorer.alerts(T0 + 90 * SEC) == []
    scorer.on_status(100, T0 + 120 * SEC, 17, False)  # unplugged: a new alert
    (alert,) = scorer.alerts(T0 + 120 * SEC)
    assert alert.since_ms == T0 + 120 * SEC


def test_no_low_battery_alert_before_the_start_once_out_or_when_stale() -> None:
    scheduled = scorer_for(1, state="scheduled", start_ms=None)
    scheduled.on_status(100, T0, 5, False)
    assert scheduled.alerts(T0) == []
    scorer = scorer_for(2, settings=ScoringSettings(battery_stale_ms=120_000))
    fix(scorer, 100, T0, 0.0)
    fix(scorer, 101, T0, 0.0)
    scorer.on_status(100, T0, 5, False)
    scorer.on_status(101, T0, 5, False)
    scorer.on_action("dnf", t_ms=T0, rider_id=101, reason="crash")
    assert [(a.kind, a.rider_id) for a in scorer.alerts(T0 + SEC)] == [(AlertKind.LOW_BATTERY, 100)]
    for second in range(1, 130):  # still riding; no more statuses: the level is too old
        fix(scorer, 100, T0 + second * SEC, 10.0 * second)
        fix(scorer, 101, T0 + second * SEC, 10.0 * second)
    assert scorer.alerts(T0 + 129 * SEC) == []


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda s: s.on_status(999, T0, 50, False), "unknown-rider"),
        (lambda s: s.on_status(100, T0, 101, False), "bad-status"),
        (lambda s: s.on_status(100, T0, -1, False), "bad-status"),
        (lambda s: s.on_status(100, T0, 50, 1), "bad-status"),
        (lambda s: s.on_status(100, -5, 50, False), "bad-status"),
    ],
)
def test_bad_statuses_raise_with_a_reason_and_change_nothing(call: object, reason: str) -> None:
    scorer = scorer_for(1)
    scorer.on_status(100, T0, 60, False)
    before = scorer.standings(T0)
    with pytest.raises(LocalProtocolError) as err:
        call(scorer)  # type: ignore[operator]
    assert err.value.reason == reason
    assert scorer.standings(T0) == before


def test_battery_settings_are_validated() -> None:
    with pytest.raises(LocalProtocolError, match="low_battery_pct must be at most 100"):
        ScoringSettings(low_battery_pct=101)
    with pytest.raises(LocalProtocolError, match="battery_stale_ms must be a positive integer"):
        ScoringSettings(battery_stale_ms=0)
