"""Pricing files: one TOML file per provider in ``deploy/pricing/``, checked on load.

Each item has a price (or an hourly one), a unit, the URL it is published at, the date it
stands for, and either the day it was read at that URL (``read_on``, with the date the page
itself gives, ``page_date``, when it gives one) or why it was not (``not_read``). Anything
missing, misspelt or of the wrong type is a :class:`PricingError` naming the file and the
field: ``deploy/pricing/aws.toml: items.egress.price: ...``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

PRICING_DIR = Path(__file__).resolve().parent.parent / "pricing"
"""The providers' pricing files, ``NAME.toml``."""

CENT = Decimal("0.01")
"""Monthly prices and bill lines are rounded (half up) to the cent, as bills are."""

HOURS_PER_MONTH = Decimal(730)
"""Hourly list prices become monthly ones at 730 hours (365 x 24 / 12), as AWS bills."""

PAGE_DATE = r"\d{4}-(0[1-9]|1[0-2])"
"""A month a page gives as its date, ``YYYY-MM`` (a full date is written as a TOML date)."""

ITEMS: dict[str, str] = {
    "cluster": "Kubernetes control plane",
    "api_node": "API node",
    "relay_node": "Regional relay node",
    "postgres": "PostgreSQL server",
    "postgres_storage": "PostgreSQL storage",
    "block_storage": "Database volume",
    "object_storage": "Object storage (history)",
    "load_balancer": "Load balancer",
    "public_ipv4": "Public IPv4",
    "egress": "Egress to spectators",
}
"""Every item a pricing file must price, with its label, in bill order."""


class CostError(Exception):
    """Base of the cost model's errors; its message is one line for the user."""


class UnknownProviderError(CostError):
    """The caller named a provider that has no pricing file."""


class PricingError(CostError):
    """A pricing file is malformed: the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Price:
    """One priced item of a provider: ``cost = base + max(0, quantity - included) * price``."""

    service: str
    """What is bought (the provider's product name and size)."""
    unit: str
    """What one unit is: ``server-month``, ``GB-month``, ``GB``..."""
    price: Decimal
    """Price of one unit a month (hourly prices times :data:`HOURS_PER_MONTH`, to the cent)."""
    source: str
    """Where the price is published (the page it was read from, when it was read)."""
    as_of: dt.date
    """The date the price stands for: the page's own date when it gives one, else the day
    it was read; for a price not re-read, the date it was last known."""
    base: Decimal = Decimal(0)
    """A monthly fee paid whatever the quantity (object storage's base fee)."""
    included: Decimal = Decimal(0)
    """Units the account gets free each month."""
    included_per_node: Decimal = Decimal(0)
    """Units each server gets free each month (traffic included with a server)."""
    read_on: dt.date | None = None
    """The day the price was read at :attr:`source`; ``None`` when it was not re-read."""
    page_date: str = ""
    """The date the page itself gives (``YYYY-MM-DD`` or ``YYYY-MM``), when it gives one."""
    source_note: str = ""
    """What kind of source it is, e.g. a third-party page where the provider's is not stored."""
    not_read: str = ""
    """Why the price was not re-read (empty when :attr:`read_on` is set)."""

    @property
    def reread(self) -> bool:
        """Whether the price was read at its source (rather than carried over unread)."""
        return self.read_on is not None


@dataclass(frozen=True, slots=True)
class Layout:
    """How the provider's services shape the deployment."""

    udp_load_balancer: bool
    """The relays' QUIC port sits behind a provider load balancer (one more in the base);
    else each relay node serves it on its own public IPv4."""
    ipv4_per_node: int
    """Public IPv4 addresses billed per server."""
    ipv4_per_load_balancer: int
    """Public IPv4 addresses billed per load balancer (0: included in its price)."""


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """Who the prices are from, in what currency, and when they were written down."""

    name: str
    """Short name, as given to ``--provider``."""
    title: str
    """The provider's name for people."""
    currency: str
    """ISO 4217 code of every price in the file."""
    region: str
    """The region the prices are for."""
    stated_on: dt.date
    """The day the prices were written into the file."""
    note: str
    """Taxes, discounts and caveats in one line."""
    pricing_file: str
    """The file the prices were read from."""


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider's pricing file, checked."""

    info: ProviderInfo
    """Who, where, which currency."""
    layout: Layout
    """How its services shape the deployment."""
    prices: Mapping[str, Price]
    """One price per key of :data:`ITEMS`."""


def providers(directory: Path = PRICING_DIR) -> list[str]:
    """The names of the providers priced in ``directory``, sorted."""
    return sorted(path.stem for path in directory.glob("*.toml"))


def load_provider(name: str, directory: Path = PRICING_DIR) -> Provider:
    """The provider ``name`` (``directory/NAME.toml``), or :class:`UnknownProviderError`."""
    known = providers(directory)
    if name not in known:
        raise UnknownProviderError(
            f"unknown provider {name!r}: choose one of {', '.join(known) or '(none)'} "
            f"(pricing files in {_shown(directory)})"
        )
    return load_pricing(directory / f"{name}.toml")


def load_pricing(path: Path) -> Provider:
    """Read and check one pricing file; :class:`PricingError` names the file and field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PricingError(f"{_shown(path)}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PricingError(f"{_shown(path)}: not valid TOML: {exc}") from None
    return _Checker(path).provider(data)


def _shown(path: Path) -> str:
    """``path`` as people see it: relative to the project when inside it."""
    try:
        return str(path.resolve().relative_to(PRICING_DIR.parent.parent))
    except ValueError:
        return str(path)


class _Checker:
    """Field-by-field checks of a pricing file, each failure naming ``file: field``."""

    def __init__(self, path: Path) -> None:
        self.path = _shown(path)

    def fail(self, field: str, message: str) -> PricingError:
        return PricingError(f"{self.path}: {field}: {message}")

    def table(
        self, data: Mapping[str, Any], key: str, allowed: set[str], parent: str = ""
    ) -> dict[str, Any]:
        field = f"{parent}{key}"
        value = data.get(key)
        if not isinstance(value, dict):
            raise self.fail(field, "missing table" if value is None else "must be a table")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(f"{field}.{unknown[0]}", f"unknown field (known: {sorted(allowed)})")
        return value

    def text(self, data: Mapping[str, Any], field: str, key: str, pattern: str = ".") -> str:
        value = data.get(key)
        if not isinstance(value, str) or not re.search(pattern, value):
            raise self.fail(f"{field}.{key}", f"must be text matching {pattern!r}, got {value!r}")
        return value

    def number(self, data: Mapping[str, Any], field: str, key: str, default: Any = None) -> Decimal:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise self.fail(f"{field}.{key}", f"must be a number >= 0, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(f"{field}.{key}", f"must be a finite number, got {value!r}")
        return Decimal(str(value))

    def count(self, data: Mapping[str, Any], field: str, key: str) -> int:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"{field}.{key}", f"must be a whole number >= 0, got {value!r}")
        return value

    def date(self, data: Mapping[str, Any], field: str, key: str) -> dt.date:
        value = data.get(key)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = dt.date.fromisoformat(value)
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise self.fail(f"{field}.{key}", f"must be a date (YYYY-MM-DD), got {value!r}")
        return value

    def page_date(self, data: Mapping[str, Any], field: str) -> str:
        """A page's own date: a TOML date, or ``"YYYY-MM"`` when the page names a month."""
        value = data.get("page_date")
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value.isoformat()
        if not isinstance(value, str) or not re.fullmatch(PAGE_DATE, value):
            raise self.fail(
                f"{field}.page_date", f'must be a date (YYYY-MM-DD) or "YYYY-MM", got {value!r}'
            )
        return value

    def provider(self, data: Mapping[str, Any]) -> Provider:
        unknown = sorted(set(data) - {"provider", "layout", "items"})
        if unknown:
            raise self.fail(unknown[0], "unknown table (known: provider, layout, items)")
        meta = self.table(
            data, "provider", {"name", "title", "currency", "region", "stated_on", "note"}
        )
        info = ProviderInfo(
            name=self.text(meta, "provider", "name", r"^[a-z0-9][a-z0-9-]*$"),
            title=self.text(meta, "provider", "title"),
            currency=self.text(meta, "provider", "currency", r"^[A-Z]{3}$"),
            region=self.text(meta, "provider", "region"),
            stated_on=self.date(meta, "provider", "stated_on"),
            note=self.text(meta, "provider", "note"),
            pricing_file=self.path,
        )
        shape = self.table(
            data, "layout", {"udp_load_balancer", "ipv4_per_node", "ipv4_per_load_balancer"}
        )
        if not isinstance(shape.get("udp_load_balancer"), bool):
            raise self.fail("layout.udp_load_balancer", "must be true or false")
        layout = Layout(
            udp_load_balancer=shape["udp_load_balancer"],
            ipv4_per_node=self.count(shape, "layout", "ipv4_per_node"),
            ipv4_per_load_balancer=self.count(shape, "layout", "ipv4_per_load_balancer"),
        )
        items = self.table(data, "items", set(ITEMS))
        prices = {key: self.price(items, key) for key in ITEMS}
        return Provider(info, layout, prices)

    def price(self, items: Mapping[str, Any], key: str) -> Price:
        field = f"items.{key}"
        known = {"service", "unit", "price", "hourly", "base", "included", "included_per_node"}
        provenance = {"source", "as_of", "read_on", "page_date", "source_note", "not_read"}
        item = self.table(items, key, known | provenance, "items.")
        if ("price" in item) == ("hourly" in item):
            raise self.fail(field, "give exactly one of price (per unit a month) or hourly")
        if ("read_on" in item) == ("not_read" in item):
            raise self.fail(
                field,
                "give exactly one of read_on (the day the price was read at source) "
                "or not_read (why it was not)",
            )
        if "page_date" in item and "read_on" not in item:
            raise self.fail(f"{field}.page_date", "only with read_on (a page that was read)")
        if "hourly" in item:
            hourly = self.number(item, field, "hourly")
            monthly = (hourly * HOURS_PER_MONTH).quantize(CENT, ROUND_HALF_UP)
        else:
            monthly = self.number(item, field, "price")
        as_of = self.date(item, field, "as_of")
        read_on = self.date(item, field, "read_on") if "read_on" in item else None
        if read_on is not None and as_of > read_on:
            raise self.fail(f"{field}.as_of", f"{as_of} is after read_on ({read_on})")
        return Price(
            service=self.text(item, field, "service"),
            unit=self.text(item, field, "unit", r"^[A-Za-z][\w-]*$"),
            price=monthly,
            source=self.text(item, field, "source", r"^https://[^\s/]+\.[^\s]+$"),
            as_of=as_of,
            base=self.number(item, field, "base", 0),
            included=self.number(item, field, "included", 0),
            included_per_node=self.number(item, field, "included_per_node", 0),
            read_on=read_on,
            page_date=self.page_date(item, field) if "page_date" in item else "",
            source_note=self.text(item, field, "source_note") if "source_note" in item else "",
            not_read=self.text(item, field, "not_read") if "not_read" in item else "",
        )
