"""The console's parts with no server: commands, the queue file, the view, the cloud feed."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from console_tui.client import CloudClient
from console_tui.commands import Command
from console_tui.errors import BadCommand, ConsoleError
from console_tui.feed import CloudFeed
from console_tui.outbox import Outbox
from console_tui.view import RaceView, RiderRow, age, distance, gap, speed
from console_tui.widgets import RelayRow
from deploy.cli import main
from sync_protocol.course import Course


def test_commands_carry_one_action_id_and_the_servers_bodies() -> None:
    penalty = Command.new(3, "penalty", "ada", 1_000, rider_id=7, bib=12, name="Bo",
                          seconds=20, reason="  drafting ")  # fmt: skip
    assert penalty.path == "/api/races/3/actions"
    assert penalty.body() == {
        "action_id": penalty.action_id,
        "kind": "penalty",
        "rider_id": 7,
        "reason": "drafting",
        "seconds": 20,
    }
    assert penalty.describe() == "time penalty +20 s to #12 Bo: drafting"
    dnf = Command.new(3, "dnf", "ada", 1_000, rider_id=7, reason="crash")
    assert "seconds" not in dnf.body()
    assert dnf.action_id != penalty.action_id
    neutralise = Command.new(3, "neutralise", "ada", 1_000)
    assert neutralise.path == "/api/races/3/state"
    assert neutralise.body() == {"state": "neutralised", "action_id": neutralise.action_id}
    assert Command.from_json(json.loads(json.dumps(penalty.to_json()))) == penalty


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("penalty", {"rider_id": 7, "reason": "drafting"}, "non-zero number of seconds"),
        ("penalty", {"rider_id": 7, "seconds": 3601, "reason": "drafting"}, "seconds"),
        ("dnf", {"rider_id": 7, "reason": "no"}, "reason must be 3..300"),
        ("dnf", {"reason": "crash"}, "needs a rider"),
        ("dsq", {"rider_id": 7, "seconds": 5, "reason": "sprint"}, "takes no seconds"),
        ("start", {"rider_id": 7}, "whole race"),
        ("teleport", {}, "unknown command"),
    ],
)
def test_bad_commands_are_refused_before_anything_is_sent(
    kind: str, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(BadCommand, match=message):
        Command.new(1, kind, "ada", 0, **fields)  # type: ignore[arg-type]


def test_the_queue_file_survives_a_restart_and_holds_each_action_once(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path)
    dnf = Command.new(1, "dnf", "ada", 5, rider_id=2, reason="crash")
    start = Command.new(1, "start", "ada", 6)
    outbox.add(dnf, 10)
    outbox.add(dnf, 11)  # the same action_id: still once
    outbox.add(start, 12, "cloud unreachable")
    outbox.failed(dnf.action_id, "cloud unreachable")
    with pytest.raises(ConsoleError, match="another console is using"):
        Outbox.open(tmp_path)
    outbox.close()
    again = Outbox.open(tmp_path)
    assert [e.command for e in again.entries] == [dnf, start]
    assert (again.entries[0].attempts, again.entries[0].last_error) == (1, "cloud unreachable")
    again.remove(dnf.action_id)
    assert dnf.action_id not in again
    assert start.action_id in again
    again.close()


def test_an_unreadable_queue_file_stops_the_console_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "queue.json").write_text("{not json")
    with pytest.raises(ConsoleError, match=r"move .* aside"):
        Outbox.open(tmp_path)
    (tmp_path / "queue.json").write_text(json.dumps({"version": 1, "commands": [{"x": 1}]}))
    with pytest.raises(ConsoleError, match="bad entry"):
        Outbox.open(tmp_path)


def test_board_formats() -> None:
    assert [gap(None), gap(0), gap(7_400), gap(3_723_000)] == ["—", "+0:00", "+0:07", "+1:02:03"]
    assert [speed(None), speed(1000)] == ["—", "36.0"]
    assert [distance(None), distance(4_100.0)] == ["—", "4.10"]
    assert [age(None), age(3_000), age(600_000), age(9_000_000)] == ["—", "3 s", "10 min", "2 h"]


def test_relay_standings_json_reads_like_the_scorers_records() -> None:
    standings = {
        "status": "results_published",
        "riders": [
            {"position": 1, "rider_id": 5, "bib": 3, "name": "Ada", "status": "racing",
             "gap_ms": 0, "speed_cms": 900, "distance_to_go_m": 10.0, "last_fix_age_ms": 2_000,
             "penalty_s": 10, "group": 0},
            {"position": 2, "rider_id": 6, "bib": 4, "name": "Bo", "status": "no_signal",
             "gap_ms": None, "speed_cms": None, "distance_to_go_m": None,
             "last_fix_age_ms": 45_000, "penalty_s": 0, "group": None},
        ],
        "groups": [{"index": 0, "role": "head_of_race", "bibs": [3], "gap_ms": 0}],
    }  # fmt: skip
    alerts = [{"kind": "off_course", "rider_id": 6, "bib": 4, "since_ms": 1, "detail": "x"}]
    view = RaceView.from_relay("relay r", standings, alerts)
    assert view.state == "published"
    assert [r.status for r in view.riders] == ["racing", "no signal"]
    assert [r.link for r in view.riders] == ["live", "lost"]
    assert view.groups[0].role == "head of race"
    assert view.alerts[0].kind == "off-course"
    late = RiderRow(1, 1, 1, "x", "racing", 0, 0, 0.0, 20_000, 0, 0, via="relay 2")
    assert late.link == "late via relay 2"


def test_relays_panel_merges_the_clouds_list_with_the_event_relays_own_figures() -> None:
    cloud = [
        {"id": 1, "name": "finish", "race_ids": [4], "disabled": False, "last_seen_ms": None},
        {"id": 2, "name": "summit", "race_ids": [4], "disabled": False, "last_seen_ms": None},
        {"id": 3, "name": "other race", "race_ids": [5], "disabled": False},
    ]
    info = {"relay_id": 1, "name": "relay", "uplink": "down", "trackers": 12,
            "spectators": 40, "backlog_fixes": 360}  # fmt: skip
    rows = RelayRow.merge(cloud, info, 4)
    assert [(r.name, r.uplink, r.trackers, r.backlog, r.seen) for r in rows] == [
        ("finish", "down", "12", "360", "here"),
        ("summit", "—", "—", "—", "never"),
    ]


def test_the_cloud_feed_scores_the_live_stream_like_the_relay() -> None:
    points = [(45.0, 6.0 + i * 0.001, 500.0) for i in range(60)]  # ~4.7 km east
    course = Course.from_points(points, name="line")
    race = {"id": 9, "state": "live", "starts_at_ms": 1_000_000, "course": course.to_dict()}
    start_list = [{"rider_id": 1, "bib": 1, "name": "Ada"}, {"rider_id": 2, "bib": 2, "name": "Bo"}]
    seen: list[dict[str, object]] = []

    async def build() -> CloudFeed:  # the client is only held, never used, here
        return CloudFeed(CloudClient("http://127.0.0.1:9"), race, start_list, seen.append)

    feed = asyncio.run(build())
    assert feed.view(1_000_000) is None  # nothing before the snapshot
    feed.apply({"type": "snapshot", "race": None, "riders": [], "actions": []})

    def fix(rider: int, t_s: int, metres: float) -> dict[str, object]:
        lon = 6.0 + metres / (111_320 * math.cos(math.radians(45.0)))
        return {"type": "fix", "rider_id": rider, "t_ms": 1_000_000 + t_s * 1000,
                "lat_e7": 450_000_000, "lon_e7": round(lon * 1e7), "speed_cms": 1000,
                "via": 3}  # fmt: skip

    for t in (10, 20, 30):
        feed.apply(fix(1, t, 100.0 * t))
        feed.apply(fix(2, t, 100.0 * t - 500))
    feed.relay_names = {3: "finish"}
    feed.apply({"type": "action", "action_id": "a-1-2-3-4", "kind": "dnf", "rider_id": 2,
                "t_ms": 1_031_000, "reason": "crash", "actor": "ada"})  # fmt: skip
    feed.apply({"type": "action", "action_id": "a-1-2-3-4", "kind": "dnf", "rider_id": 2,
                "t_ms": 1_031_000, "reason": "crash", "actor": "ada"})  # fmt: skip
    feed.apply({"type": "race", "state": "neutralised", "t_ms": 1_032_000})
    view = feed.view(1_033_000)
    assert view is not None
    assert view.state == "neutralised"
    assert [(r.bib, r.status, r.link) for r in view.riders] == [
        (1, "racing", "live via finish"),
        (2, "dnf", "live via finish"),
    ]
    assert [m["type"] for m in seen] == ["action", "race"]  # the replay counted once


def test_the_command_says_in_one_line_when_a_server_cannot_be_reached(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["console", "--server", "http://127.0.0.1:9", "--data", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: cannot reach http://127.0.0.1:9: All connection attempts failed"
    ]
