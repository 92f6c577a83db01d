"""The relay's live race model, driven with no sockets and no clock: time is an argument."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_protocol.course import Checkpoint, Course
from sync_protocol.errors import LocalProtocolError
from sync_protocol.frames import (
    RaceStatus,
    RiderStatus,
    decode_frame,
    encode_delta,
    encode_snapshot,
    fits_datagram,
)
from sync_protocol.race.groups import GroupRole, OnRoad, form_groups
from sync_protocol.race.progress_log import ProgressLog
from sync_protocol.race.scoring import (
    AlertKind,
    FixOutcome,
    RaceScorer,
    ScoringSettings,
    Standing,
)
from tracker_app.simulate import START_MS, realistic_track

T0 = START_MS
SEC = 1_000

# A straight road east along the 45th parallel, 15.7 km.
STRAIGHT = Course.from_points(
    [(45.0, 6.0, 400.0), (45.0, 6.2, 420.0)],
    checkpoints=[
        Checkpoint("Sprint", "sprint", 3_005.0),
        Checkpoint("Côte", "climb", 6_000.0, end_m=8_000.0),
        Checkpoint("Feed", "feed", 10_000.0),
    ],
    name="Straight",
)


def at(course: Course, d: float) -> tuple[int, int]:
    """The point at race distance ``d``; past the finish, straight on along the last metre."""
    lat, lon, _ = course.point_at(min(max(d, 0.0), course.finish_m))
    if d > course.finish_m:
        lat0, lon0, _ = course.point_at(course.finish_m - 1.0)
        over = d - course.finish_m
        lat, lon = lat + (lat - lat0) * over, lon + (lon - lon0) * over
    return round(lat * 1e7), round(lon * 1e7)


def fix(
    scorer: RaceScorer,
    rider_id: int,
    t_ms: int,
    d: float,
    *,
    speed_cms: int = 1_000,
    course: Course = STRAIGHT,
) -> FixOutcome:
    return scorer.on_fix(rider_id, t_ms, *at(course, d), 0, speed_cms)


def scorer_for(riders: int, course: Course | None = STRAIGHT, **kwargs: object) -> RaceScorer:
    start_list = {100 + i: (i + 1, f"Rider {i + 1}") for i in range(riders)}
    options: dict[str, object] = {"state": "live", "start_ms": T0} | kwargs
    return RaceScorer(42, course, start_list, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Rider:
    rider_id: int
    offset_s: float  # starts this long after T0
    speed_ms: float

    def distance(self, t_ms: int) -> float:
        return max(0.0, self.speed_ms * ((t_ms - T0) / SEC - self.offset_s))


def ride(scorer: RaceScorer, riders: list[Rider], until_s: int, course: Course = STRAIGHT) -> int:
    """One fix a second per rider (from their start) until ``until_s``; returns now_ms."""
    for second in range(until_s + 1):
        t = T0 + second * SEC
        for r in riders:
            if second >= r.offset_s:
                fix(scorer, r.rider_id, t, r.distance(t), speed_cms=round(r.speed_ms * 100))
    return T0 + until_s * SEC


def by_rider(standings: list[Standing]) -> dict[int, Standing]:
    return {s.rider_id: s for s in standings}


# -- gaps at the same point of the course -------------------------------------------------


def test_gap_is_the_time_at_the_same_point_thirty_seconds_later_is_thirty_seconds() -> None:
    scorer = scorer_for(2)
    now = ride(scorer, [Rider(100, 0, 10.0), Rider(101, 30, 10.0)], 900)
    rows = by_rider(scorer.standings(now))
    assert rows[100].gap_ms == 0
    assert rows[101].gap_ms == 30_000  # the same points, 30 s later: exactly
    assert rows[100].progress_m == pytest.approx(9_000, abs=0.05)
    assert rows[101].progress_m == pytest.approx(8_700, abs=0.05)
    frame = {r.bib: r for r in scorer.frame(now).riders}
    assert (frame[1].gap_ds, frame[2].gap_ds) == (0, 300)


def test_gap_interpolates_between_the_leaders_samples() -> None:
    """The chaser's fixes fall between the leader's: the leader's time is interpolated."""
    scorer = scorer_for(2)
    leader, chaser = Rider(100, 0, 12.0), Rider(101, 45.437, 12.0)
    for second in range(600):
        t = T0 + second * SEC
        fix(scorer, 100, t, leader.distance(t), speed_cms=1200)
        t_chaser = t + 437  # fixes 437 ms off the leader's
        if second >= 46:
            fix(scorer, 101, t_chaser, chaser.distance(t_chaser), speed_cms=1200)
    gap = by_rider(scorer.standings(T0 + 600 * SEC))[101].gap_ms
    assert gap is not None
    assert abs(gap - 45_437) <= 3  # centimetres of rounding in 1e-7 degrees


def test_gap_on_a_realistic_noisy_track() -> None:
    """Two riders on the same simulated road (GPS noise, speed changes), 30 s apart."""
    track = realistic_track(1_500, seed=5)
    course = Course.from_points([(f.lat, f.lon) for f in track[::10]], name="Realistic")
    scorer = scorer_for(2, course)
    for f in track:
        scorer.on_fix(100, f.t_ms, f.lat_e7, f.lon_e7, f.ele_dm, f.speed_cms)
        scorer.on_fix(101, f.t_ms + 30_000, f.lat_e7, f.lon_e7, f.ele_dm, f.speed_cms)
    now = track[-1].t_ms + 30_000
    rows = by_rider(scorer.standings(now))
    assert [s.rider_id for s in scorer.standings(now)] == [100, 101]
    assert rows[101].gap_ms is not None
    assert abs(rows[101].gap_ms - 30_000) <= 1_000
    assert rows[100].progress_m is not None
    assert rows[100].progress_m > 12_000  # ~1,500 s at ~9-11 m/s


# -- positions and groups -----------------------------------------------------------------


def test_positions_groups_and_their_names() -> None:
    riders = [
        Rider(100, 0, 11.0),  # breakaway of two
        Rider(101, 1.0, 11.0),
        Rider(102, 60.0, 11.0),  # peloton of five
        Rider(103, 60.5, 11.0),
        Rider(104, 61.0, 11.0),
        Rider(105, 61.5, 11.0),
        Rider(106, 62.0, 11.0),
        Rider(107, 200.0, 11.0),  # a straggler
    ]
    scorer = scorer_for(8)
    now = ride(scorer, riders, 700)
    standings = scorer.standings(now)
    assert [s.rider_id for s in standings] == list(range(100, 108))
    assert [s.position for s in standings] == list(range(1, 9))
    groups = scorer.groups(now)
    assert [g.role for g in groups] == [GroupRole.BREAKAWAY, GroupRole.PELOTON, GroupRole.STRAGGLER]
    assert [g.rider_ids for g in groups] == [(100, 101), (102, 103, 104, 105, 106), (107,)]
    assert [g.gap_ms for g in groups] == [0, 60_000, 200_000]
    rows = by_rider(standings)
    assert (rows[104].group, rows[104].group_role, rows[104].group_gap_ms) == (
        1,
        GroupRole.PELOTON,
        60_000,
    )
    assert rows[104].gap_ms == 61_000
    assert rows[107].distance_to_go_m == pytest.approx(STRAIGHT.finish_m - 11.0 * 500, abs=0.1)
    frame = {r.bib: r for r in scorer.frame(now).riders}
    assert [frame[b].group for b in range(1, 9)] == [0, 0, 1, 1, 1, 1, 1, 2]


def test_a_group_without_a_peloton_is_the_head_of_race() -> None:
    groups = form_groups(
        [
            OnRoad(1, 1, 500.0, 0, None),
            OnRoad(2, 2, 490.0, 900, 900),
            OnRoad(3, 3, 300.0, 20_000, 19_100),
            OnRoad(4, 4, 290.0, 21_000, None),  # unknown gap ahead: a new group
        ],
        group_gap_ms=3_000,
        peloton_min_riders=3,
    )
    assert [(g.role, g.bibs, g.gap_ms) for g in groups] == [
        (GroupRole.HEAD_OF_RACE, (1, 2), 0),
        (GroupRole.STRAGGLER, (3,), 20_000),
        (GroupRole.STRAGGLER, (4,), 21_000),
    ]
    gaps = [(0, None), (9_000, 9_000), (20_000, 11_000), (20_500, 500), (21_000, 500)]
    chase = form_groups(
        [OnRoad(i, i, 1_000.0 - i, g, a) for i, (g, a) in enumerate(gaps, start=1)],
        group_gap_ms=3_000,
        peloton_min_riders=3,
    )
    assert [g.role for g in chase] == [GroupRole.BREAKAWAY, GroupRole.CHASE, GroupRole.PELOTON]


# -- checkpoints, the finish and penalties -------------------------------------------------


def test_checkpoint_crossings_are_interpolated_between_fixes() -> None:
    scorer = scorer_for(2)
    now = ride(scorer, [Rider(100, 0, 10.0), Rider(101, 12.25, 10.0)], 1_010)
    passages = {(p.checkpoint, p.top): p for p in by_rider(scorer.standings(now))[100].passages}
    # Fixes at 3,000 m (300 s) and 3,010 m (301 s): the sprint line at 3,005 m is 300.5 s.
    assert abs(passages["Sprint", False].t_ms - (T0 + 300_500)) <= 2
    assert passages["Sprint", False].bracket_ms == 1_000
    assert abs(passages["Côte", False].t_ms - (T0 + 600_000)) <= 2
    assert abs(passages["Côte", True].t_ms - (T0 + 800_000)) <= 2
    assert [p.checkpoint for p in by_rider(scorer.standings(now))[100].passages] == [
        "Sprint",
        "Côte",
        "Côte",
        "Feed",
    ]
    arrivals = scorer.arrivals("Sprint")
    assert [(a.order, a.bib) for a in arrivals] == [(1, 1), (2, 2)]
    assert abs(arrivals[1].gap_ms - 12_250) <= 3
    assert [a.bib for a in scorer.arrivals("Côte", top=True)] == [1, 2]
    with pytest.raises(LocalProtocolError, match="no top of checkpoint 'Sprint'"):
        scorer.arrivals("Sprint", top=True)


def test_finish_order_with_a_time_penalty_changing_the_result() -> None:
    short = Course.from_points([(45.0, 6.0), (45.0, 6.02)])  # 1,573 m
    scorer = scorer_for(3, short)
    riders = [Rider(100, 0, 10.0), Rider(101, 5, 10.0), Rider(102, 30, 10.0)]
    for second in range(200):
        t = T0 + second * SEC
        for r in riders:
            if second >= r.offset_s:
                fix(scorer, r.rider_id, t, r.distance(t), course=short)
    now = T0 + 200 * SEC
    finish_s = short.finish_m / 10.0
    rows = by_rider(scorer.standings(now))
    assert rows[100].status is RiderStatus.FINISHED
    assert rows[100].finish_ms is not None
    assert abs(rows[100].finish_ms - (T0 + finish_s * 1000)) <= 2
    assert rows[101].gap_ms is not None
    assert abs(rows[101].gap_ms - 5_000) <= 2
    assert [s.bib for s in scorer.standings(now)] == [1, 2, 3]

    assert scorer.on_action(
        "penalty", t_ms=now, rider_id=100, seconds=10, reason="feeding", action_id="act-00001"
    )
    assert not scorer.on_action(  # a replay (the cloud re-sends actions on resync)
        "penalty", t_ms=now, rider_id=100, seconds=10, reason="feeding", action_id="act-00001"
    )
    standings = scorer.standings(now)
    assert [s.bib for s in standings] == [2, 1, 3]
    winner, penalised = standings[0], standings[1]
    assert (penalised.penalty_s, penalised.penalties[0].reason) == (10, "feeding")
    assert penalised.time_ms is not None
    assert winner.time_ms is not None
    assert penalised.time_ms - winner.time_ms == pytest.approx(5_000, abs=3)
    assert penalised.gap_ms == 0  # on the road they were first: the road gap has no penalty
    assert {r.bib: r.penalty_s for r in scorer.frame(now).riders} == {1: 10, 2: 0, 3: 0}

    scorer.on_action(
        "penalty", t_ms=now, rider_id=100, seconds=-10, reason="withdrawn", action_id="act-00002"
    )
    assert [s.bib for s in scorer.standings(now)] == [1, 2, 3]


def test_official_statuses_show_in_frames_and_order_the_standings() -> None:
    scorer = scorer_for(5)
    now = ride(scorer, [Rider(100 + i, i * 10, 10.0) for i in range(5)], 300)
    assert scorer.on_action("dnf", t_ms=now, rider_id=100, reason="crash", action_id="act-dnf-1")
    assert not scorer.on_action("dnf", t_ms=now, rider_id=100, reason="again")  # already out
    scorer.on_action("dsq", t_ms=now, rider_id=101, reason="tow", action_id="act-dsq-1")
    scorer.on_action("dns", t_ms=now, rider_id=102, reason="ill", action_id="act-dns-1")
    frame = {r.bib: r.status for r in scorer.frame(now).riders}
    assert frame == {
        1: RiderStatus.DNF,
        2: RiderStatus.DSQ,
        3: RiderStatus.DNS,
        4: RiderStatus.RACING,
        5: RiderStatus.RACING,
    }
    assert [s.bib for s in scorer.standings(now)] == [4, 5, 1, 2, 3]
    rows = by_rider(scorer.standings(now))
    assert rows[103].gap_ms == 0  # the leader is the first rider still in the race
    assert rows[100].gap_ms is None
    assert rows[100].group is None
    scorer.on_action("reinstate", t_ms=now, rider_id=100, reason="error", action_id="act-re-1")
    assert by_rider(scorer.standings(now))[100].status is RiderStatus.RACING
    assert scorer.standings(now)[0].bib == 1


def test_race_status_follows_race_control_neutralised_included() -> None:
    scorer = RaceScorer(7, STRAIGHT, {1: (1, "A")})
    assert (scorer.race_status, scorer.start_ms) == (RaceStatus.SCHEDULED, None)
    assert scorer.on_action("start", t_ms=T0)
    assert (scorer.race_status, scorer.start_ms) == (RaceStatus.LIVE, T0)
    scorer.on_action("neutralise", t_ms=T0 + 60 * SEC)
    assert scorer.frame(T0 + 61 * SEC).race_status is RaceStatus.NEUTRALISED
    scorer.on_action("resume", t_ms=T0 + 120 * SEC)
    assert scorer.frame(T0 + 121 * SEC).race_status is RaceStatus.LIVE
    assert not scorer.on_race_state("live", t_ms=T0 + 122 * SEC)  # already: a no-op
    scorer.on_race_state("finished", t_ms=T0 + 3_600 * SEC)
    with pytest.raises(LocalProtocolError, match="finished: it cannot become live") as err:
        scorer.on_action("resume", t_ms=T0 + 3_601 * SEC)
    assert err.value.reason == "bad-transition"
    scorer.on_action("publish", t_ms=T0 + 3_700 * SEC)
    assert scorer.frame(T0 + 3_700 * SEC).race_status is RaceStatus.RESULTS_PUBLISHED
    late = RaceScorer(8, None, {}, state="scheduled")
    assert late.on_race_state("finished", t_ms=T0)  # a late subscriber skips ahead
    assert late.race_status is RaceStatus.FINISHED


# -- late fixes --------------------------------------------------------------------------


def test_backfill_after_an_outage_times_the_checkpoint_without_moving_the_rider() -> None:
    scorer = scorer_for(1)
    for second in range(0, 251):  # 0..2,500 m
        fix(scorer, 100, T0 + second * SEC, 10.0 * second)
    # Ten minutes with no link: the next live fix is at 8,500 m, past the sprint and the climb.
    t_live = T0 + 850 * SEC
    assert fix(scorer, 100, t_live, 8_500.0) is FixOutcome.LIVE
    row = scorer.standings(t_live)[0]
    assert [p.checkpoint for p in row.passages] == []  # a 600 s bracket times nothing
    missed = [a for a in scorer.alerts(t_live) if a.kind is AlertKind.MISSED_CHECKPOINT]
    assert [a.checkpoint for a in missed] == ["Sprint", "Côte", "Côte (top)"]

    for second in range(251, 850):  # the backfill, after the live fix
        assert fix(scorer, 100, T0 + second * SEC, 10.0 * second) is FixOutcome.LATE
    row = scorer.standings(t_live)[0]
    assert (row.lat_e7, row.lon_e7) == at(STRAIGHT, 8_500.0)  # still where the live fix put it
    assert row.progress_m == pytest.approx(8_500.0, abs=0.05)
    sprint = {p.checkpoint: p for p in row.passages}["Sprint"]
    assert abs(sprint.t_ms - (T0 + 300_500)) <= 2
    assert sprint.bracket_ms == 1_000
    assert not [a for a in scorer.alerts(t_live) if a.kind is AlertKind.MISSED_CHECKPOINT]
    assert fix(scorer, 100, t_live, 8_500.0) is FixOutcome.DUPLICATE


def test_a_late_fix_narrows_a_wide_bracket() -> None:
    """Live fixes a minute apart time the sprint roughly; the 1 Hz backfill exactly."""

    def distance(second: int) -> float:  # 5 m/s for 100 s, then 15 m/s
        return 5.0 * second if second <= 100 else 500.0 + 15.0 * (second - 100)

    scorer = scorer_for(
        1,
        Course.from_points(
            [(45.0, 6.0), (45.0, 6.2)], checkpoints=[Checkpoint("Sprint", "sprint", 1_000.0)]
        ),
    )
    course = scorer.course
    assert course is not None
    for second in (0, 60, 150):
        fix(scorer, 100, T0 + second * SEC, distance(second), course=course)
    rough = scorer.standings(T0 + 150 * SEC)[0].passages[0]
    assert rough.bracket_ms == 90_000
    assert abs(rough.t_ms - (T0 + 126_316)) <= 3
    for second in range(61, 150):
        fix(scorer, 100, T0 + second * SEC, distance(second), course=course)
    exact = scorer.standings(T0 + 150 * SEC)[0].passages[0]
    assert exact.bracket_ms == 1_000
    assert abs(exact.t_ms - (T0 + 133_333)) <= 3


def test_progress_from_the_cloud_stream_is_used_as_given() -> None:
    scorer = scorer_for(1)
    lat, lon = at(STRAIGHT, 0.0)  # the position is not projected when progress is given
    scorer.on_fix(100, T0, lat, lon, 0, 1000, progress_m=2_990.0)
    scorer.on_fix(100, T0 + SEC, lat, lon, 0, 1000, progress_m=3_010.0)
    scorer.on_fix(100, T0 + 2 * SEC, lat, lon, 0, 1000, progress_m=3_000.0)  # never back
    row = scorer.standings(T0 + 2 * SEC)[0]
    assert row.progress_m == 3_010.0
    assert row.passages[0].t_ms == T0 + 750


# -- alerts ------------------------------------------------------------------------------


def test_stopped_alert_and_status_then_cleared_by_moving_on() -> None:
    scorer = scorer_for(1)
    for second in range(0, 101):
        fix(scorer, 100, T0 + second * SEC, 10.0 * second)
    for second in range(101, 230):  # a puncture: standing at 1,000 m
        fix(scorer, 100, T0 + second * SEC, 1_000.0, speed_cms=0)
    assert scorer.frame(T0 + 129 * SEC).riders[0].status is RiderStatus.RACING
    assert scorer.frame(T0 + 131 * SEC).riders[0].status is RiderStatus.STOPPED
    assert scorer.alerts(T0 + 220 * SEC) == []
    (alert,) = scorer.alerts(T0 + 229 * SEC)
    assert (alert.kind, alert.rider_id, alert.bib, alert.since_ms) == (
        AlertKind.STOPPED,
        100,
        1,
        T0 + 101 * SEC,
    )
    assert alert.detail == "standing still for 2 min 08 s"
    fix(scorer, 100, T0 + 230 * SEC, 1_010.0)
    assert scorer.alerts(T0 + 230 * SEC) == []
    assert scorer.frame(T0 + 230 * SEC).riders[0].status is RiderStatus.RACING
    scorer.on_action("neutralise", t_ms=T0 + 231 * SEC)
    for second in range(231, 400):
        fix(scorer, 100, T0 + second * SEC, 1_010.0, speed_cms=0)
    assert scorer.alerts(T0 + 399 * SEC) == []  # everyone stands still in a neutralisation


def test_silent_alert_and_no_signal_status_then_cleared_by_a_fix() -> None:
    scorer = scorer_for(2)
    fix(scorer, 100, T0, 0.0)
    assert [a.kind for a in scorer.alerts(T0 + 59 * SEC)] == []
    alerts = scorer.alerts(T0 + 61 * SEC)
    assert [(a.kind, a.rider_id, a.since_ms) for a in alerts] == [
        (AlertKind.SILENT, 100, T0),
        (AlertKind.SILENT, 101, T0),  # never heard from since the start
    ]
    assert alerts[1].detail == "no fix received since the start"
    frame = {r.bib: r for r in scorer.frame(T0 + 61 * SEC).riders}
    assert frame[1].status is RiderStatus.NO_SIGNAL
    assert frame[1].fix_age_s == 61
    assert frame[1].gap_ds is None
    assert frame[2].fix_age_s == 65_535
    assert (frame[2].lat_e7, frame[2].lon_e7) == at(STRAIGHT, 0)
    fix(scorer, 100, T0 + 62 * SEC, 600.0)
    assert [a.rider_id for a in scorer.alerts(T0 + 62 * SEC)] == [101]
    assert scorer.frame(T0 + 62 * SEC).riders[0].status is RiderStatus.RACING


def test_off_course_alert_keeps_progress_then_clears_and_the_skipped_line_is_missed() -> None:
    scorer = scorer_for(1)
    for second in range(0, 291):  # to 2,900 m
        fix(scorer, 100, T0 + second * SEC, 10.0 * second)
    lat, lon = at(STRAIGHT, 2_950.0)
    for second in range(291, 300):  # a detour 500 m north, round the sprint line
        scorer.on_fix(100, T0 + second * SEC, lat + 45_000, lon + second * 1_000, 0, 1_000)
    (alert,) = scorer.alerts(T0 + 299 * SEC)
    assert (alert.kind, alert.since_ms) == (AlertKind.OFF_COURSE, T0 + 291 * SEC)
    assert alert.detail.endswith("m off course")
    row = scorer.standings(T0 + 299 * SEC)[0]
    assert row.progress_m == pytest.approx(2_900.0, abs=0.05)
    assert row.lat_e7 == lat + 45_000
    for second in range(300, 320):  # back on the road after the sprint
        fix(scorer, 100, T0 + second * SEC, 3_100.0 + 10.0 * (second - 300))
    alerts = scorer.alerts(T0 + 319 * SEC)
    assert [(a.kind, a.checkpoint) for a in alerts] == [(AlertKind.MISSED_CHECKPOINT, "Sprint")]
    assert "Sprint (3.0 km)" in alerts[0].detail


def test_alerts_wait_for_the_start() -> None:
    scorer = scorer_for(1, state="scheduled", start_ms=None)
    for second in range(0, 300):
        fix(scorer, 100, T0 + second * SEC, 0.0, speed_cms=0)
    assert scorer.alerts(T0 + 600 * SEC) == []
    assert scorer.frame(T0 + 299 * SEC).riders[0].status is RiderStatus.RACING


# -- frames, course changes, memory, input errors ------------------------------------------


def test_frames_round_trip_and_ticks_count_up() -> None:
    scorer = scorer_for(50)
    riders = [Rider(100 + i, i * 2.5, 9.0 + (i % 7) * 0.5) for i in range(50)]
    now = ride(scorer, riders, 400)
    scorer.on_action("penalty", t_ms=now, rider_id=107, seconds=20, reason="pushed")
    scorer.on_action("dnf", t_ms=now, rider_id=111, reason="crash")
    first, second = scorer.frame(now), scorer.frame(now + SEC)
    assert (first.tick, second.tick, second.t_ms) == (0, 1, now + SEC)
    data = encode_snapshot(first)
    assert fits_datagram(data)
    assert decode_frame(data) == first
    assert decode_frame(encode_delta(first, second), first) == second
    assert {r.bib for r in first.riders} == set(range(1, 51))


def test_without_a_course_positions_only_then_the_course_places_riders() -> None:
    scorer = scorer_for(2, course=None)
    fix(scorer, 100, T0, 5_000.0)
    fix(scorer, 101, T0, 4_000.0)
    standings = scorer.standings(T0)
    assert [s.bib for s in standings] == [1, 2]
    assert all(s.progress_m is None and s.gap_ms is None for s in standings)
    assert [r.progress_m for r in scorer.frame(T0).riders] == [0, 0]
    scorer.set_course(STRAIGHT)  # placed from their last fixes, anywhere on the course
    rows = by_rider(scorer.standings(T0))
    assert rows[100].progress_m == pytest.approx(5_000.0, abs=0.05)
    assert rows[101].progress_m == pytest.approx(4_000.0, abs=0.05)


def test_a_relay_restarted_mid_race_places_a_first_fix_anywhere_on_the_course() -> None:
    scorer = scorer_for(1)
    fix(scorer, 100, T0, 12_345.0)
    assert scorer.standings(T0)[0].progress_m == pytest.approx(12_345.0, abs=0.05)


def test_history_memory_is_bounded_and_still_answers() -> None:
    settings_ = ScoringSettings(history_cap=256)
    scorer = scorer_for(2, settings=settings_)
    now = ride(scorer, [Rider(100, 0, 10.0), Rider(101, 60, 10.0)], 1_500)
    assert by_rider(scorer.standings(now))[101].gap_ms == pytest.approx(60_000, abs=50)
    log = ProgressLog(spacing_m=10.0, max_interval_ms=10_000, cap=4_096)
    for second in range(6 * 3_600):  # a six-hour stage at 1 Hz
        log.append(second * 9.5, T0 + second * SEC)
    assert len(log) <= 4_096
    assert log.time_at(100_000.0) == pytest.approx(T0 + 100_000 / 9.5 * 1000, abs=1)


def test_progress_log_keeps_the_first_time_at_a_distance() -> None:
    log = ProgressLog(spacing_m=10.0, max_interval_ms=10_000, cap=64)
    log.append(0.0, 0)
    log.append(5.0, 1_000)
    for t in range(2_000, 600_000, 1_000):  # standing still at 5 m for ten minutes
        log.append(5.0, t)
    log.append(8.0, 601_000)
    assert log.time_at(5.0) == 1_000
    assert log.time_at(6.5) == pytest.approx(301_000)  # moving again is interpolated
    assert log.time_at(-1.0) is None
    assert log.time_at(9.0) is None
    with pytest.raises(LocalProtocolError, match="not after the last sample"):
        log.append(9.0, 601_000)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda s: s.on_fix(999, T0, 0, 0), "unknown-rider"),
        (lambda s: s.on_fix(100, T0, 900_000_001, 0), "bad-fix"),
        (lambda s: s.on_fix(100, T0, 0, 0, 0, -1), "bad-fix"),
        (lambda s: s.on_fix(100, T0, 0, 0, 0, 0, math.nan), "bad-fix"),
        (lambda s: s.on_action("kick", t_ms=T0, rider_id=100), "bad-action"),
        (lambda s: s.on_action("dnf", t_ms=T0, rider_id=555), "bad-action"),
        (lambda s: s.on_action("penalty", t_ms=T0, rider_id=100, seconds=0), "bad-action"),
        (lambda s: s.on_action("start", t_ms=T0, rider_id=100), "bad-action"),
        (lambda s: s.on_race_state("paused", t_ms=T0), "bad-state"),
        (lambda s: s.add_rider(555, 1, "Same bib"), "bad-rider"),
        (lambda s: s.frame(-1), "bad-time"),
    ],
)
def test_bad_input_raises_with_a_reason_and_changes_nothing(call: object, reason: str) -> None:
    scorer = scorer_for(1)
    fix(scorer, 100, T0, 100.0)
    before = scorer.standings(T0)
    with pytest.raises(LocalProtocolError) as err:
        call(scorer)  # type: ignore[operator]
    assert err.value.reason == reason
    assert scorer.standings(T0) == before


def test_settings_are_validated() -> None:
    with pytest.raises(LocalProtocolError, match="group_gap_ms must be a positive integer"):
        ScoringSettings(group_gap_ms=0)
    with pytest.raises(LocalProtocolError, match="off_course_m must be a positive number"):
        ScoringSettings(off_course_m=math.inf)


# -- properties --------------------------------------------------------------------------

OUTCOMES = st.sampled_from([None, None, None, "dnf", "dsq", "dns"])


@settings(max_examples=30, deadline=None)
@given(
    riders=st.lists(
        st.tuples(st.floats(0, 300), st.floats(3, 16), OUTCOMES, st.integers(-30, 60)),
        min_size=1,
        max_size=8,
    ),
    until_s=st.integers(0, 700),
    step_s=st.integers(1, 20),
)
def test_positions_are_a_permutation_and_the_leader_gap_is_zero(
    riders: list[tuple[float, float, str | None, int]], until_s: int, step_s: int
) -> None:
    course = Course.from_points(
        [(45.0, 6.0), (45.0, 6.06)], checkpoints=[Checkpoint("Mid", "intermediate", 2_000.0)]
    )  # 4.7 km: the fast ones finish
    scorer = scorer_for(len(riders), course)
    for second in range(0, until_s + 1, step_s):
        t = T0 + second * SEC
        for i, (offset, speed, _, _) in enumerate(riders):
            if second >= offset:
                d = speed * (second - offset)
                fix(scorer, 100 + i, t, d, speed_cms=round(speed * 100), course=course)
    now = T0 + until_s * SEC
    for i, (_, _, outcome, penalty) in enumerate(riders):
        if outcome is not None:
            scorer.on_action(outcome, t_ms=now, rider_id=100 + i)
        if penalty:
            scorer.on_action("penalty", t_ms=now, rider_id=100 + i, seconds=penalty, reason="x")
    standings = scorer.standings(now)
    assert sorted(s.position for s in standings) == list(range(1, len(riders) + 1))
    assert [s.position for s in standings] == list(range(1, len(riders) + 1))
    gaps = [s.gap_ms for s in standings if s.gap_ms is not None]
    assert all(g >= 0 for g in gaps)
    if gaps:
        assert min(gaps) == 0
    out = {RiderStatus.DNF, RiderStatus.DSQ, RiderStatus.DNS}
    assert all(s.gap_ms is None for s in standings if s.status in out)
    ranks = [s.position for s in standings if s.status in out]
    assert ranks == list(range(len(riders) - len(ranks) + 1, len(riders) + 1))
    frame = scorer.frame(now)
    assert decode_frame(encode_snapshot(frame)) == frame
    for group in scorer.groups(now):
        members = [s for s in standings if s.rider_id in group.rider_ids]
        assert {s.group for s in members} == {group.index}
