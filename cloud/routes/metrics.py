"""Prometheus metrics: ingest outcomes and reasons, trackers' direct uploads and device
statuses, races by state."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..auth.principal import public
from ..device_status import DeviceStatuses
from ..direct import DirectUploads
from ..ingest import Ingest
from ..store.races import RaceStore


class CloudCollector(Collector):
    """Reads the live counters at scrape time (no global registry state)."""

    def __init__(
        self, ingest: Ingest, direct: DirectUploads, statuses: DeviceStatuses, races: RaceStore
    ) -> None:
        self.ingest, self.direct, self.statuses, self.races = ingest, direct, statuses, races

    def collect(self) -> Iterator[Metric]:
        batches = CounterMetricFamily(
            "gruppetto_ingest_batches", "Batches ingested, by outcome", labels=["outcome"]
        )
        rejected = CounterMetricFamily(
            "gruppetto_ingest_rejected", "Rejected batches, by reason", labels=["reason"]
        )
        for key, count in sorted(self.ingest.counters.items()):
            outcome, _, reason = key.partition(":")
            if reason:
                rejected.add_metric([reason], count)
            else:
                batches.add_metric([outcome], count)
        yield batches
        yield rejected
        hellos = CounterMetricFamily(
            "gruppetto_tracker_hellos",
            "Session hellos of trackers uploading straight to the cloud, by outcome or reason",
            labels=["outcome"],
        )
        direct = CounterMetricFamily(
            "gruppetto_tracker_batches",
            "Batches trackers uploaded straight to the cloud, by outcome",
            labels=["outcome"],
        )
        for key, count in sorted(self.direct.counters.items()):
            kind, _, outcome = key.partition(":")
            (hellos if kind == "hello" else direct).add_metric([outcome], count)
        yield hellos
        yield direct
        statuses = CounterMetricFamily(
            "gruppetto_device_statuses",
            "Trackers' battery statuses, by way (direct, relay) and outcome or reason",
            labels=["via", "outcome"],
        )
        for key, count in sorted(self.statuses.counters.items()):
            via, _, outcome = key.partition(":")
            statuses.add_metric([via, outcome], count)
        yield statuses
        races = GaugeMetricFamily("gruppetto_races", "Races, by state", labels=["state"])
        for row in self.races.query("SELECT state, COUNT(*) AS n FROM races GROUP BY state"):
            races.add_metric([row["state"]], row["n"])
        yield races


@public
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    registry = CollectorRegistry()
    state = request.app.state
    registry.register(
        CloudCollector(state.ingest, state.direct, state.device_status, state.stores.races)
    )
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")


routes = [Route("/metrics", metrics, methods=["GET"])]
