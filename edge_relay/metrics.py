"""Prometheus metrics of one relay, read from its live counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .fanout import LATENCY_BUCKETS_MS

if TYPE_CHECKING:
    from .relay import Relay


class RelayCollector(Collector):
    """Trackers, spectators, frames, fix-to-frame latency, device statuses, backlog, uplink."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def collect(self) -> Iterator[Metric]:
        relay = self.relay
        trackers = GaugeMetricFamily(
            "gruppetto_relay_trackers", "Devices admitted since the relay started"
        )
        trackers.add_metric([], len(relay.ingest.inbox.receivers) if relay.ingest else 0)
        yield trackers
        quic = CounterMetricFamily("gruppetto_relay_quic_connections", "QUIC connections accepted")
        on_workers = relay.workers.connections if relay.workers is not None else 0
        quic.add_metric([], relay.connections + on_workers)
        yield quic
        spectators = GaugeMetricFamily(
            "gruppetto_relay_spectators", "Spectator sessions", labels=["transport"]
        )
        spectators.add_metric(["webtransport"], relay.spectator_sessions)
        spectators.add_metric(["websocket"], relay.fanout.socket_count)
        yield spectators
        stats = relay.fanout.stats
        frames = CounterMetricFamily("gruppetto_relay_frames", "Live frames", labels=["sent_as"])
        frames.add_metric(["produced"], stats.frames)
        workers = relay.workers.datagrams if relay.workers is not None else 0
        frames.add_metric(["datagram"], stats.datagrams + workers)
        frames.add_metric(["stream"], stats.stream_frames)
        frames.add_metric(["websocket"], stats.socket_frames)
        yield frames
        if relay.workers is not None:
            restarts = CounterMetricFamily(
                "gruppetto_relay_fanout_worker_restarts",
                "Fan-out workers started again after dying",
            )
            restarts.add_metric([], relay.workers.restarts)
            yield restarts
            forwarded = CounterMetricFamily(
                "gruppetto_relay_forwarded_requests",
                "Tracker requests taken in by fan-out workers and answered here",
            )
            forwarded.add_metric([], relay.workers.forwarded)
            yield forwarded
        latency = HistogramMetricFamily(
            "gruppetto_relay_fix_to_frame_ms", "Fix arrival to live frame out (ms)"
        )
        buckets = [
            (str(b), c) for b, c in zip(LATENCY_BUCKETS_MS, stats.latency_buckets, strict=True)
        ]
        latency.add_metric([], [*buckets, ("+Inf", stats.latency_count)], stats.latency_sum_ms)
        yield latency
        batches = CounterMetricFamily(
            "gruppetto_relay_batches", "Tracker batches, by outcome", labels=["outcome"]
        )
        refused = CounterMetricFamily(
            "gruppetto_relay_refused", "Refused batches and hellos, by reason", labels=["reason"]
        )
        counters = dict(relay.ingest.counters) if relay.ingest else {}
        for key, count in sorted(counters.items()):
            outcome, _, reason = key.partition(":")
            if reason:
                refused.add_metric([f"{outcome}:{reason}"], count)
            else:
                batches.add_metric([outcome], count)
        statuses = CounterMetricFamily(
            "gruppetto_relay_device_statuses",
            "Trackers' battery statuses: accepted, old (a newer one was there) or refused",
            labels=["outcome"],
        )
        outcomes: dict[str, int] = {}
        for key, count in sorted(relay.statuses.counters.items()):
            outcome, _, reason = key.partition(":")
            outcomes[outcome] = outcomes.get(outcome, 0) + count
            if reason:
                refused.add_metric([f"status:{reason}"], count)
        for outcome, count in outcomes.items():
            statuses.add_metric([outcome], count)
        yield batches
        yield statuses
        yield refused
        runs, fixes = relay.reads.backlog()
        backlog = GaugeMetricFamily(
            "gruppetto_relay_backlog", "Waiting to be forwarded to the cloud", labels=["unit"]
        )
        backlog.add_metric(["runs"], runs)
        backlog.add_metric(["fixes"], fixes)
        yield backlog
        uplink = GaugeMetricFamily("gruppetto_relay_uplink_up", "1 when the cloud is reachable")
        uplink.add_metric([], 1 if relay.uplink and relay.uplink.status.state == "up" else 0)
        yield uplink
        commits = CounterMetricFamily("gruppetto_relay_commits", "Group commits to SQLite")
        commits.add_metric([], relay.committer.stats.commits)
        yield commits
        checkpoints = CounterMetricFamily(
            "gruppetto_relay_checkpoints",
            "WAL checkpoints into the database file (beside the writer)",
        )
        checkpoints.add_metric([], relay.committer.stats.checkpoints)
        yield checkpoints
