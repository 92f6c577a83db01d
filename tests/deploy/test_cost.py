"""The cost model: pricing files, line items, scale-up steps, totals, JSON and the command."""

from __future__ import annotations

import hashlib
import json
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from deploy.cli import main
from deploy.cost import (
    ITEMS,
    PRICING_DIR,
    Assumptions,
    CostError,
    Estimate,
    PricingError,
    Provider,
    UnknownProviderError,
    Usage,
    bill,
    cost,
    estimate,
    load_pricing,
    load_provider,
    providers,
    render,
)
from deploy.cost.model import usage_for
from deploy.cost.pricing import CENT

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = providers()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["cost", *args])
    return result.exit_code, result.output


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> Provider:
    return load_provider(request.param)


# --- Pricing files -------------------------------------------------------------------


def test_at_least_two_providers_are_priced() -> None:
    assert len(PROVIDERS) >= 2
    assert {"aws", "hetzner"} <= set(PROVIDERS)


def test_every_price_has_a_source_and_the_date_it_stands_for(provider: Provider) -> None:
    assert set(provider.prices) == set(ITEMS)
    assert provider.info.name == Path(provider.info.pricing_file).stem
    assert "check before buying" in provider.info.note
    for key, price in provider.prices.items():
        assert price.source.startswith("https://"), key
        assert price.as_of <= provider.info.stated_on, key
        assert price.price >= 0, key
        assert price.service, key


def test_every_price_says_when_it_was_read_or_why_it_was_not(provider: Provider) -> None:
    for key, price in provider.prices.items():
        assert price.reread != bool(price.not_read), key
        if price.read_on is not None:
            assert price.as_of <= price.read_on <= provider.info.stated_on, key
            assert price.page_date <= price.read_on.isoformat(), key
        else:
            assert not price.page_date, key


def test_the_shipped_prices_were_read_on_the_day_they_were_written_down() -> None:
    for name in PROVIDERS:
        provider = load_provider(name)
        read = [p for p in provider.prices.values() if p.reread]
        assert read, name
        assert {p.read_on for p in read} == {provider.info.stated_on}, name
        unread = len(provider.prices) - len(read)
        assert f"{unread} item{'s' * (unread != 1)} not re-read" in provider.info.note, name


def test_hourly_prices_become_monthly_at_730_hours() -> None:
    aws = load_provider("aws")
    assert aws.prices["relay_node"].price == Decimal("52.93")  # 0.0725 x 730 = 52.925
    assert aws.prices["cluster"].price == Decimal("73.0")


# --- Base, steps, totals -------------------------------------------------------------


def test_base_cost_is_the_sum_of_its_line_items(provider: Provider) -> None:
    base = estimate(provider).base
    assert [line.item for line in base.lines] == list(ITEMS)
    assert base.total == sum(line.cost for line in base.lines)
    for line in base.lines:
        charged = max(Decimal(0), line.quantity - line.free)
        assert line.cost == (line.base + charged * line.unit_price).quantize(CENT, ROUND_HALF_UP)
    quantities = {line.item: line.quantity for line in base.lines}
    assert quantities["api_node"] == quantities["relay_node"] == 1  # one of each, no users
    assert quantities["egress"] == quantities["postgres"] == 0
    assert base.total > 0


def test_the_base_is_a_month_with_no_users(provider: Provider) -> None:
    result = estimate(provider, races=0, spectators=0)
    assert result.scenario.bill == result.base


def _past_allowances(provider: Provider, *, traffic: bool = True) -> Usage:
    """A usage past every free allowance (or with no traffic at all)."""
    free = max(p.included + p.included_per_node * 10 for p in provider.prices.values())
    return Usage(
        api_nodes=1,
        relay_nodes=1,
        volume_gb=Decimal(20),
        object_gb=free + 5_000,
        egress_gb=free + 100_000 if traffic else Decimal(0),
    )


def test_one_step_adds_exactly_its_items(provider: Provider) -> None:
    result = estimate(provider)
    assert [step.key for step in result.steps] == [
        "relay",
        "api",
        "multi-node",
        "history",
        "egress",
    ]
    for step in result.steps:
        assert step.lines, step.key
        assert step.cost == sum(line.cost for line in step.lines)
        for line in step.lines:
            assert line.cost == (line.quantity * line.unit_price).quantize(CENT, ROUND_HALF_UP)
        # A server brings its own free traffic on some providers: price the server steps
        # where no traffic flows, the others past every allowance.
        servers = step.delta.api_nodes + step.delta.relay_nodes
        before = _past_allowances(provider, traffic=not servers)
        added = bill(provider, before.plus(step.delta)).total - bill(provider, before).total
        # Each bill line is rounded to the cent, so what a step adds to a given bill can
        # differ from the step's own (rounded) lines by up to a cent a line.
        assert abs(added - step.cost) <= CENT * len(step.lines), step.key


def test_each_trigger_takes_its_step(provider: Provider) -> None:
    a = Assumptions()
    steps = {step.key: step for step in estimate(provider).steps}

    def total(races: int, spectators: int, months: int = 0) -> Decimal:
        return estimate(provider, races, spectators, months).scenario.bill.total

    # one spectator past a relay's share brings one more relay, nothing else (no races)
    relays = a.spectators_per_relay
    assert total(0, relays + 1) - total(0, relays) == steps["relay"].cost
    assert total(0, relays) == total(0, 1)
    # one race past what one API replica takes: the second replica and the multi-node mode
    races = a.races_per_api_replica * a.race_days_per_month
    added = total(races + 1, 0) - total(races, 0)
    assert added == steps["api"].cost + steps["multi-node"].cost
    # a third replica is one API step
    twice = 2 * races
    assert total(twice + 1, 0) - total(twice, 0) == steps["api"].cost
    # history: one race past a volume step grows the volume by one step
    kept = a.races_per_volume_step
    grown = estimate(provider, kept + 1, 0, 1).scenario.usage.volume_gb
    assert grown - estimate(provider, kept, 0, 1).scenario.usage.volume_gb == a.volume_step_gb


def test_sizing_follows_the_design_targets() -> None:
    a = Assumptions()
    assert a.fixes_per_race == 720_000  # 50 riders x 4 h at 1 Hz
    assert a.spectators_per_relay <= a.relay_sessions == 5_000  # DESIGN.md's relay target
    assert a.gb_per_spectator_hour == Decimal("0.00216")  # 600 bytes a second
    usage, figures = usage_for(20, 10_000, 12, a)
    assert usage.relay_nodes == 3
    assert usage.api_nodes == 1
    assert usage.postgres_servers == 0
    assert figures == {"races_at_once": 3, "races_kept": 240, "spectator_hours": 320_000}
    assert usage.egress_gb == Decimal("691.2")
    assert usage.volume_gb == 20 + 10 * 2  # 240 races: two 10 GB steps of 217


@given(
    races=st.integers(0, 2_000),
    spectators=st.integers(0, 200_000),
    more_races=st.integers(0, 500),
    more_spectators=st.integers(0, 50_000),
)
def test_totals_grow_monotonically_with_races_and_spectators(
    races: int, spectators: int, more_races: int, more_spectators: int
) -> None:
    for name in PROVIDERS:
        provider = load_provider(name)

        def total(r: int, s: int, provider: Provider = provider) -> Decimal:
            return estimate(provider, r, s).scenario.bill.total

        here = total(races, spectators)
        assert total(races + more_races, spectators) >= here
        assert total(races, spectators + more_spectators) >= here
        assert total(races + more_races, spectators + more_spectators) >= here


# --- JSON, text, the command ---------------------------------------------------------


def test_json_output_round_trips(provider: Provider) -> None:
    args = ["--provider", provider.info.name, "--races", "40", "--spectators", "25000"]
    code, out = run(*args, "--json")
    assert code == 0, out
    data = json.loads(out)
    result = Estimate.from_dict(data)
    assert result == estimate(provider, 40, 25_000)
    assert result.to_dict() == data
    assert json.loads(json.dumps(result.to_dict())) == data
    assert data["base"]["total"] == pytest.approx(sum(x["cost"] for x in data["base"]["lines"]))
    assert data["provider"]["pricing_file"] == f"deploy/pricing/{provider.info.name}.toml"


def test_from_dict_refuses_what_is_not_an_estimate() -> None:
    data = estimate(load_provider("aws")).to_dict()
    del data["base"]["total"]
    with pytest.raises(CostError, match="not an estimate"):
        Estimate.from_dict(data)


def test_text_shows_every_line_with_its_unit_price_and_quantity(provider: Provider) -> None:
    code, out = run("--provider", provider.info.name, "--races", "20", "--spectators", "10000")
    assert code == 0, out
    result = estimate(provider, 20, 10_000)
    assert out.strip() == render(result)
    currency = provider.info.currency
    assert "Base total" in out
    assert f"{result.base.total:,.2f} {currency}" in out
    assert f"{result.scenario.bill.total:,.2f} {currency}" in out
    for line in result.base.lines:
        assert re.search(rf"{re.escape(line.label)} +{line.quantity:,.0f} {line.unit}", out)
    for step in result.steps:
        assert f"+ {step.title}: {step.cost:,.2f} {currency} a month" in out
        assert f"when: {step.trigger}" in out
    assert provider.info.note in out


def test_without_a_scenario_only_base_and_steps_are_shown() -> None:
    code, out = run("--provider", "hetzner")
    assert code == 0, out
    assert "Base total" in out
    assert "Scale-up steps" in out
    assert "Total for" not in out


def test_unknown_provider_is_a_clear_error_listing_the_known_ones() -> None:
    code, out = run("--provider", "gcp")
    assert code == 1
    assert out.strip() == (
        "Error: unknown provider 'gcp': choose one of "
        f"{', '.join(PROVIDERS)} (pricing files in deploy/pricing)"
    )
    with pytest.raises(UnknownProviderError, match="choose one of aws, hetzner"):
        load_provider("../deploy/pricing/aws")
    code, out = run()
    assert code == 1
    assert "give --provider NAME (aws, hetzner) or --pricing FILE" in out


def test_cost_help_ends_with_an_example_that_runs() -> None:
    code, out = run("--help")
    assert code == 0
    assert "Example:" in out
    help_text = (cost.help or "").strip()
    example = help_text.rsplit("Example:", 1)[1].strip()
    assert example.startswith("gruppetto cost ")
    code, out = run(*example.split()[2:])
    assert code == 0, out
    assert "Total for 20 races a month" in out


# --- Bad pricing files ---------------------------------------------------------------

HETZNER = (PRICING_DIR / "hetzner.toml").read_text()

BAD = [
    ("price = 8.49", 'price = "cheap"', "items.api_node.price: must be a number >= 0"),
    ("price = 42.99", "price = -42.99", "items.relay_node.price: must be a number >= 0"),
    ("price = 8.49", "price = 8.49\nhourly = 0.01", "items.api_node: give exactly one of"),
    ("price = 8.49", "prise = 8.49", "items.api_node.prise: unknown field"),
    ("as_of = 2026-07-26", "as_of = 2026-13-26", "not valid TOML"),
    ("as_of = 2026-07-26", 'as_of = "last spring"', "items.api_node.as_of: must be a date"),
    ("as_of = 2026-07-26", "as_of = 2026-12-01", "items.api_node.as_of: 2026-12-01 is after"),
    ("read_on = 2026-11-23\n", "", "items.api_node: give exactly one of read_on"),
    ("read_on = 2026-11-23", 'not_read = "lazy"', "items.api_node.page_date: only with read_on"),
    ("not_read = ", "read_on = 2026-11-23\nnot_read = ", "items.postgres_storage: give exactly"),
    ("page_date = 2026-07-26", 'page_date = "July"', "items.api_node.page_date: must be a date"),
    ("page_date = 2026-07-26", 'page_date = "2026-13"', "items.api_node.page_date: must be a"),
    ("read_on = 2026-11-23", "read_on = 2026-11-31", "not valid TOML"),
    ('source = "https://github.com', 'source = "github.com', ".source: must be text"),
    ('currency = "EUR"', 'currency = "euro"', "provider.currency: must be text"),
    ("udp_load_balancer = false", 'udp_load_balancer = "no"', "layout.udp_load_balancer"),
    ("ipv4_per_node = 1", "ipv4_per_node = 1.5", "layout.ipv4_per_node: must be a whole number"),
    ("[items.egress]", "[items.egres]", "items.egres: unknown field"),
    ("[layout]", "[lay_out]", "lay_out: unknown table"),
    ("included_per_node = 20000", "included_per_node = nan", "items.egress.included_per_node"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD, ids=[b[2] for b in BAD])
def test_a_bad_pricing_file_names_the_file_and_the_field(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in HETZNER
    path = tmp_path / "mine.toml"
    path.write_text(HETZNER.replace(old, new, 1))
    with pytest.raises(PricingError) as caught:
        load_pricing(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    code, out = run("--pricing", str(path))
    assert code == 1
    assert out.startswith(f"Error: {path}: ")
    assert message in out
    assert len(out.strip().splitlines()) == 1 or "not valid TOML" in out


def test_a_missing_item_is_named(tmp_path: Path) -> None:
    start = HETZNER.index("[items.postgres]")
    end = HETZNER.index("[items.postgres_storage]")
    path = tmp_path / "short.toml"
    path.write_text(HETZNER[:start] + HETZNER[end:])
    with pytest.raises(PricingError, match=r"short\.toml: items\.postgres: missing table"):
        load_pricing(path)


def test_a_pricing_file_of_ones_own_is_priced_like_the_shipped_ones(tmp_path: Path) -> None:
    path = tmp_path / "negotiated.toml"
    path.write_text(HETZNER.replace("price = 42.99", "price = 40.00", 1))
    mine = estimate(load_pricing(path))
    shipped = estimate(load_provider("hetzner"))
    assert shipped.base.total - mine.base.total == Decimal("2.99")
    assert mine.provider.pricing_file == str(path)


# --- The history's bytes per fix, measured with the real history code -----------------


def test_history_bytes_per_fix_match_the_model(tmp_path: Path) -> None:
    """Write 40 minutes of a 50-rider race with ``cloud.history`` and weigh the result.

    Realistic tracks (GPS noise, varying speed and heading) as ingest stores them, sealed
    like a finished race: the DuckDB blocks in use and the Parquet export, per fix.
    """
    from cloud.history.store import History, fix_row, rows_to_arrow
    from sync_protocol.geo import haversine_m
    from tracker_app.simulate import realistic_track

    riders, seconds = 50, 2_400
    tracks = {rider: realistic_track(seconds, seed=rider) for rider in range(1, riders + 1)}
    rows = []
    for rider, track in tracks.items():
        device = hashlib.sha256(b"rider %d" % rider).digest()[:16]
        progress = 0.0
        for prev, fix in zip([None, *track[:-1]], track, strict=True):
            if prev is not None:
                progress += haversine_m(prev.lat, prev.lon, fix.lat, fix.lon)
            rows.append(fix_row(1, rider, rider, device, fix, progress_m=progress, prev=prev))
    rows.sort(key=lambda row: row[5])  # arrival order: the riders' fixes interleave
    fixes = len(rows)
    with History.open(tmp_path / "history.duckdb") as history:
        with history.reader() as cur:
            empty = cur.execute("SELECT used_blocks FROM pragma_database_size()").fetchone()
        for start in range(0, fixes, 30_000):
            history.append(rows_to_arrow(rows[start : start + 30_000]))
        history.seal_race(1)
        with history.reader() as cur:
            block, used = cur.execute(
                "SELECT block_size, used_blocks FROM pragma_database_size()"
            ).fetchone()
        parquet = history.export_parquet(1, tmp_path / "parquet").stat().st_size
    assert empty is not None
    duckdb_per_fix = block * (used - empty[0]) / fixes
    parquet_per_fix = parquet / fixes
    a = Assumptions()
    assert 0.75 * a.history_bytes_per_fix <= duckdb_per_fix <= 1.25 * a.history_bytes_per_fix
    assert 0.85 * a.parquet_bytes_per_fix <= parquet_per_fix <= 1.15 * a.parquet_bytes_per_fix


# --- The documentation shows real output ----------------------------------------------


def test_docs_show_the_commands_real_output() -> None:
    docs = (ROOT / "docs" / "cost.md").read_text()
    shown_for = set()
    for match in re.finditer(r"```console\n\$ (gruppetto cost [^\n]+)\n(.*?)```", docs, re.S):
        command, shown = match.group(1), match.group(2)
        code, out = run(*command.split()[2:])
        assert code == 0, out
        assert out.strip() == shown.strip(), f"docs/cost.md is out of date for: {command}"
        shown_for.add(command.split("--provider ")[1].split()[0])
    assert shown_for == set(PROVIDERS), "docs/cost.md shows the output for every provider"
