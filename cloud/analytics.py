"""The analytics service: the system of record's view of a race joined to its history.

What "start" means. Finish times (results ``time_ms``) and splits (stats ``splits[].
elapsed_ms``) count from the gun, :func:`~cloud.store.races.gun_ms`: the moment the race
first went live (``started_ms``), or its scheduled start while it has not gone live yet.
Neutralisations do not move it. Moving time, distance, speeds and climbing do not depend on
it. Summaries, comparisons and seasons carry the race's ``starts_at_ms`` (scheduled) and
``started_ms`` (real, null before the race goes live); their own ``start_ms``/``end_ms``
are the first and last fix recorded (of the field, or of the rider in a season).
"""

from __future__ import annotations

from typing import Any

from sync_protocol.course import Course

from .errors import not_found
from .history.analytics import (
    RiderInfo,
    compare_races,
    race_results,
    race_summary,
    rider_season,
    rider_stats,
)
from .history.store import History
from .store.actions import ActionStore
from .store.races import RaceStore, gun_ms

STATUSES = {
    "registered": "racing",
    "finished": "finished",
    "dnf": "DNF",
    "dns": "DNS",
    "dsq": "DSQ",
}


class Analytics:
    """Results, per-rider statistics, summaries, seasons and comparisons."""

    def __init__(self, races: RaceStore, actions: ActionStore, history: History) -> None:
        self.races, self.actions, self.history = races, actions, history

    def _race(self, race_id: int) -> tuple[dict[str, Any], Course | None]:
        race = self.races.get(race_id)
        if race is None:
            raise not_found(f"race {race_id}")
        return race, Course.from_dict(race["course"]) if race["course"] else None

    def results(self, race_id: int) -> list[dict[str, Any]]:
        """The classification: finish times, gaps, ranks, statuses."""
        race, course = self._race(race_id)
        if course is None:
            return []
        penalties = self.actions.penalties(race_id)
        riders = {
            r["rider_id"]: RiderInfo(
                r["rider_id"],
                r["bib"],
                r["name"],
                STATUSES.get(r["status"], "racing"),
                penalties.get(r["rider_id"], 0),
            )
            for r in self.races.start_list(race_id)
        }
        with self.history.reader() as cur:
            return race_results(
                cur, race_id, finish_m=course.finish_m, riders=riders, start_ms=gun_ms(race)
            )

    def stats(self, race_id: int) -> list[dict[str, Any]]:
        """Per rider: distance, moving time, speeds, climbing, splits, climbs."""
        race, course = self._race(race_id)
        checkpoints = course.checkpoints if course else ()
        with self.history.reader() as cur:
            return rider_stats(cur, race_id, checkpoints=checkpoints, start_ms=gun_ms(race))

    def summary(self, race_id: int) -> dict[str, Any]:
        """The race at a glance."""
        race, _ = self._race(race_id)
        with self.history.reader() as cur:
            summary = race_summary(cur, race_id)
        return {"race_id": race_id, "name": race["name"], **_starts(race), **summary}

    def season(self, rider_id: int) -> list[dict[str, Any]]:
        """Every race of a rider."""
        with self.history.reader() as cur:
            rows = rider_season(cur, rider_id)
        races = {r["race_id"]: self.races.get(r["race_id"]) for r in rows}
        return [{**r, **_starts(races[r["race_id"]])} for r in rows]

    def compare(self, race_ids: list[int]) -> list[dict[str, Any]]:
        """Race summaries side by side."""
        races = [self._race(race_id)[0] for race_id in race_ids]
        with self.history.reader() as cur:
            rows = compare_races(cur, race_ids)
        return [
            {"race_id": r["race_id"], **_starts(race), **r}
            for r, race in zip(rows, races, strict=True)
        ]


def _starts(race: dict[str, Any] | None) -> dict[str, int | None]:
    """The race's scheduled and real start (both null for a race no longer on record)."""
    if race is None:
        return {"starts_at_ms": None, "started_ms": None}
    return {"starts_at_ms": race["starts_at_ms"], "started_ms": race["started_ms"]}
