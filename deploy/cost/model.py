"""The cost model: sizing a month of races and spectators, pricing it, the scale-up steps.

:class:`Assumptions` says what a race, a spectator and a relay weigh; :func:`usage_for`
turns races and spectators into servers, volumes and traffic (:class:`Usage`); :func:`bill`
prices a usage line by line with a provider's prices; :func:`steps` prices what each
scale-up step adds; :func:`estimate` puts them together.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .pricing import CENT, ITEMS, CostError, Provider, ProviderInfo


@dataclass(frozen=True, slots=True)
class Assumptions:
    """What a race, a spectator and a relay weigh (docs/cost.md gives the sources)."""

    riders_per_race: int = 50
    """Riders in a race (the design's maximum)."""
    race_hours: int = 4
    """Length of a race; riders send one fix a second for all of it."""
    history_bytes_per_fix: int = 32
    """DuckDB bytes per fix of a sealed race (measured: ~30 on realistic tracks)."""
    parquet_bytes_per_fix: int = 30
    """Parquet (zstd) bytes per fix of the per-race export (measured: ~29)."""
    volume_headroom: int = 2
    """Volume bytes provisioned per byte of history: DuckDB keeps blocks freed by sealing
    until it reuses them, and a volume is grown before it fills."""
    base_volume_gb: int = 20
    """The database volume with no history: SQLite, DuckDB's WAL, keys, certificates."""
    volume_step_gb: int = 10
    """How much the volume grows at a time."""
    relay_sessions: int = 5_000
    """WebTransport sessions one relay process serves (the design target)."""
    spectators_per_relay: int = 4_000
    """Spectators planned per relay: 80% of :attr:`relay_sessions`, the autoscaler's target."""
    frame_bytes_per_second: int = 600
    """Bytes a spectator receives a second: a 50-rider frame (320-490 bytes) plus QUIC,
    UDP and IP headers, rounded up."""
    races_per_api_replica: int = 40
    """Races running at once one API replica ingests (2,000 fixes/s) and streams."""
    race_days_per_month: int = 8
    """Days a month with races (weekends); races of a day run at once."""
    postgres_gb: int = 20
    """Storage of the PostgreSQL system of record in the multi-node mode."""
    egress_step_hours: int = 100_000
    """Spectator-hours per egress step."""

    @property
    def fixes_per_race(self) -> int:
        """Fixes a race leaves in the history (riders x hours at 1 Hz)."""
        return self.riders_per_race * self.race_hours * 3_600

    @property
    def races_per_volume_step(self) -> int:
        """Races of history one volume step holds."""
        per_race = self.fixes_per_race * self.history_bytes_per_fix * self.volume_headroom
        return max(1, self.volume_step_gb * 10**9 // per_race)

    @property
    def parquet_gb_per_race(self) -> Decimal:
        """Object storage a race's Parquet export takes, in GB."""
        return Decimal(self.fixes_per_race * self.parquet_bytes_per_fix) / 10**9

    @property
    def gb_per_spectator_hour(self) -> Decimal:
        """Egress of one spectator watching for an hour, in GB."""
        return Decimal(self.frame_bytes_per_second * 3_600) / 10**9


@dataclass(frozen=True, slots=True)
class Usage:
    """What is deployed and used in a month (or what a step adds to it)."""

    api_nodes: int = 0
    """API replicas, one node each."""
    relay_nodes: int = 0
    """Regional relays, one node each."""
    postgres_servers: int = 0
    """PostgreSQL servers (1 in the multi-node mode)."""
    postgres_gb: Decimal = Decimal(0)
    """PostgreSQL storage, GB."""
    volume_gb: Decimal = Decimal(0)
    """The database volume, GB."""
    object_gb: Decimal = Decimal(0)
    """History in object storage, GB."""
    egress_gb: Decimal = Decimal(0)
    """Traffic out to spectators, GB."""

    def plus(self, other: Usage) -> Usage:
        """This usage with ``other`` added, field by field."""
        return Usage(
            *(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self))
        )


@dataclass(frozen=True, slots=True)
class Scenario:
    """A month with ``races`` races and ``spectators`` at the peak, sized and priced."""

    races: int
    """Races a month."""
    spectators: int
    """Spectators watching at once at the peak, all races together."""
    history_months: int
    """Months of race history kept."""
    races_at_once: int
    """Races running at the same time on a race day."""
    races_kept: int
    """Races in the history."""
    spectator_hours: int
    """Spectator-hours a month (the peak audience, every race day, whole races)."""
    usage: Usage
    """What that takes."""
    bill: Bill
    """What it costs."""


def usage_for(
    races: int, spectators: int, history_months: int, assumptions: Assumptions
) -> tuple[Usage, dict[str, int]]:
    """Size a month: the usage, and the figures it was derived from."""
    a = assumptions
    race_days = min(races, a.race_days_per_month)
    at_once = math.ceil(races / a.race_days_per_month)
    kept = races * history_months
    hours = spectators * a.race_hours * race_days
    api = max(1, math.ceil(at_once / a.races_per_api_replica))
    multi = 1 if api > 1 else 0
    usage = Usage(
        api_nodes=api,
        relay_nodes=max(1, math.ceil(spectators / a.spectators_per_relay)),
        postgres_servers=multi,
        postgres_gb=Decimal(a.postgres_gb * multi),
        volume_gb=Decimal(
            a.base_volume_gb + a.volume_step_gb * math.ceil(kept / a.races_per_volume_step)
        ),
        object_gb=a.parquet_gb_per_race * kept,
        egress_gb=a.gb_per_spectator_hour * hours,
    )
    return usage, {"races_at_once": at_once, "races_kept": kept, "spectator_hours": hours}


# --- Bills ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a bill: ``quantity`` units of an item at its price."""

    item: str
    """The key in :data:`ITEMS`."""
    label: str
    """What it is for."""
    service: str
    """What is bought."""
    unit: str
    """The unit of ``quantity`` and ``unit_price``."""
    unit_price: Decimal
    """Price of one unit a month."""
    quantity: Decimal
    """Units used."""
    free: Decimal
    """Units free of charge (allowances)."""
    base: Decimal
    """Fee paid whatever the quantity."""
    cost: Decimal
    """``base + max(0, quantity - free) * unit_price``, rounded half up to the cent."""


@dataclass(frozen=True, slots=True)
class Bill:
    """A month's lines and their total."""

    lines: tuple[Line, ...]
    """In :data:`ITEMS` order."""
    total: Decimal
    """The sum of the lines' costs."""


def line(provider: Provider, item: str, quantity: Decimal, *, nodes: int = 0) -> Line:
    """Price ``quantity`` of ``item``; ``nodes`` servers bring their own allowances."""
    price = provider.prices[item]
    free = price.included + price.included_per_node * nodes
    charged = max(Decimal(0), quantity - free)
    cost = (price.base + charged * price.price).quantize(CENT, ROUND_HALF_UP)
    return Line(
        item, ITEMS[item], price.service, price.unit, price.price, quantity, free, price.base, cost
    )


def bill(provider: Provider, usage: Usage) -> Bill:
    """Price a month's usage, one line per item."""
    layout = provider.layout
    nodes = usage.api_nodes + usage.relay_nodes
    balancers = 1 + (1 if layout.udp_load_balancer else 0)
    quantities: dict[str, Decimal | int] = {
        "cluster": 1,
        "api_node": usage.api_nodes,
        "relay_node": usage.relay_nodes,
        "postgres": usage.postgres_servers,
        "postgres_storage": usage.postgres_gb,
        "block_storage": usage.volume_gb,
        "object_storage": usage.object_gb,
        "load_balancer": balancers,
        "public_ipv4": nodes * layout.ipv4_per_node + balancers * layout.ipv4_per_load_balancer,
        "egress": usage.egress_gb,
    }
    lines = tuple(line(provider, item, Decimal(quantities[item]), nodes=nodes) for item in ITEMS)
    return Bill(lines, sum((entry.cost for entry in lines), Decimal(0)))


# --- Steps ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One scale-up step: what it adds, at list price past any free allowance."""

    key: str
    """``relay``, ``api``, ``multi-node``, ``history`` or ``egress``."""
    title: str
    """What the step is."""
    trigger: str
    """When it is taken."""
    delta: Usage
    """What it adds to the usage (zero fields add nothing)."""
    lines: tuple[Line, ...]
    """Each item it adds, priced with no allowance."""
    cost: Decimal
    """The sum of its lines."""
    note: str = ""
    """What else comes with it."""


def _step(
    provider: Provider, key: str, title: str, trigger: str, delta: Usage, note: str = ""
) -> Step:
    """Price a step: the items ``delta`` adds, one line each, at list price."""
    unpriced = dataclasses.replace(
        provider,
        prices={
            k: dataclasses.replace(
                p, base=Decimal(0), included=Decimal(0), included_per_node=Decimal(0)
            )
            for k, p in provider.prices.items()
        },
    )
    full = bill(unpriced, delta).lines
    empty = bill(unpriced, Usage()).lines
    lines = tuple(
        dataclasses.replace(
            after, quantity=after.quantity - before.quantity, cost=after.cost - before.cost
        )
        for after, before in zip(full, empty, strict=True)
        if after.quantity != before.quantity
    )
    return Step(key, title, trigger, delta, lines, sum((x.cost for x in lines), Decimal(0)), note)


def steps(provider: Provider, a: Assumptions) -> tuple[Step, ...]:
    """The scale-up steps of the model, priced for ``provider``."""
    per_node = provider.prices["egress"].included_per_node
    traffic = f"; each server also brings {per_node:,} GB of free traffic" if per_node else ""
    history_races = a.races_per_volume_step
    hours = a.egress_step_hours
    return (
        _step(
            provider,
            "relay",
            "one more regional relay",
            f"every {a.spectators_per_relay:,} spectators watching at once "
            f"({a.spectators_per_relay * 100 // a.relay_sessions}% of the "
            f"{a.relay_sessions:,} WebTransport sessions one relay process serves)",
            Usage(relay_nodes=1),
            "the autoscaler adds it" + traffic,
        ),
        _step(
            provider,
            "api",
            "one more API replica",
            f"every {a.races_per_api_replica} races running at once "
            f"({a.races_per_api_replica * a.riders_per_race:,} fixes/s of live ingest)",
            Usage(api_nodes=1),
            "a second replica needs the multi-node mode first",
        ),
        _step(
            provider,
            "multi-node",
            "the multi-node mode (once)",
            "with the second API replica: PostgreSQL as the system of record, NATS "
            "JetStream on the existing nodes, history as Parquet read by every replica",
            Usage(postgres_servers=1, postgres_gb=Decimal(a.postgres_gb)),
        ),
        _step(
            provider,
            "history",
            f"{a.volume_step_gb} GB more database volume",
            f"every {history_races:,} races of history kept "
            f"({a.fixes_per_race:,} fixes each, {a.history_bytes_per_fix} bytes a fix "
            f"in DuckDB, x{a.volume_headroom} headroom), with their Parquet copies",
            Usage(
                volume_gb=Decimal(a.volume_step_gb),
                object_gb=a.parquet_gb_per_race * history_races,
            ),
        ),
        _step(
            provider,
            "egress",
            f"{hours:,} spectator-hours of live frames",
            f"per {hours:,} spectator-hours ({a.frame_bytes_per_second} bytes a second "
            "per spectator)",
            Usage(egress_gb=a.gb_per_spectator_hour * hours),
            "free while within the included traffic" if per_node else "",
        ),
    )


# --- The estimate --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Estimate:
    """A provider's base cost, its scale-up steps, and the cost of one scenario."""

    provider: ProviderInfo
    """Whose prices."""
    assumptions: Assumptions
    """The workload model."""
    base: Bill
    """A month with no users: one API node, one regional relay."""
    steps: tuple[Step, ...]
    """What each scale-up step adds."""
    scenario: Scenario
    """The month asked about."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: money and sizes as numbers, dates as ``YYYY-MM-DD``."""
        return typing.cast(dict[str, Any], _dump(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        """The inverse of :meth:`to_dict`; :class:`CostError` when ``data`` is not one."""
        try:
            return typing.cast(Estimate, _load(cls, data))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise CostError(f"not an estimate: {exc!r}") from None


def estimate(
    provider: Provider,
    races: int = 0,
    spectators: int = 0,
    history_months: int = 12,
    assumptions: Assumptions | None = None,
) -> Estimate:
    """Base, steps and the scenario of ``races`` a month and ``spectators`` at the peak."""
    if min(races, spectators, history_months) < 0:
        raise CostError("races, spectators and history months must be >= 0")
    a = assumptions or Assumptions()
    base_usage, _ = usage_for(0, 0, 0, a)
    usage, figures = usage_for(races, spectators, history_months, a)
    scenario = Scenario(
        races, spectators, history_months, **figures, usage=usage, bill=bill(provider, usage)
    )
    return Estimate(provider.info, a, bill(provider, base_usage), steps(provider, a), scenario)


def _dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _load(kind: Any, value: Any) -> Any:
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        return kind(
            **{f.name: _load(hints[f.name], value[f.name]) for f in dataclasses.fields(kind)}
        )
    if typing.get_origin(kind) is tuple:
        (item, _) = typing.get_args(kind)
        return tuple(_load(item, v) for v in value)
    if kind is Decimal:
        return Decimal(str(value))
    if kind is dt.date:
        return dt.date.fromisoformat(value)
    if kind in (int, str, bool) and isinstance(value, kind):
        return value
    raise CostError(f"cannot read {value!r} as {kind}")
