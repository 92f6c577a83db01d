"""The analytics service: the system of record's view of a race joined to its history."""

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
from .store.races import RaceStore

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
                cur, race_id, finish_m=course.finish_m, riders=riders, start_ms=race["starts_at_ms"]
            )

    def stats(self, race_id: int) -> list[dict[str, Any]]:
        """Per rider: distance, moving time, speeds, climbing, splits, climbs."""
        race, course = self._race(race_id)
        checkpoints = course.checkpoints if course else ()
        with self.history.reader() as cur:
            return rider_stats(cur, race_id, checkpoints=checkpoints, start_ms=race["starts_at_ms"])

    def summary(self, race_id: int) -> dict[str, Any]:
        """The race at a glance."""
        race, _ = self._race(race_id)
        with self.history.reader() as cur:
            return {"race_id": race_id, "name": race["name"], **race_summary(cur, race_id)}

    def season(self, rider_id: int) -> list[dict[str, Any]]:
        """Every race of a rider."""
        with self.history.reader() as cur:
            return rider_season(cur, rider_id)

    def compare(self, race_ids: list[int]) -> list[dict[str, Any]]:
        """Race summaries side by side."""
        for race_id in race_ids:
            self._race(race_id)
        with self.history.reader() as cur:
            return compare_races(cur, race_ids)
