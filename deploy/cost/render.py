"""The estimate as text tables."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from .model import Estimate, Line


def _num(value: Decimal | int) -> str:
    """A quantity: grouped thousands, no trailing zeros."""
    value = Decimal(value)
    if value == value.to_integral_value():
        return f"{value:,.0f}"
    return f"{value.normalize():,f}"


def _money(value: Decimal) -> str:
    """A unit price: at least cents, more digits when it has them."""
    exponent = value.normalize().as_tuple().exponent
    digits = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{value:,.{digits}f}"


def _cents(value: Decimal) -> str:
    """An amount of money, rounded half up to the cent."""
    return f"{value.quantize(Decimal('0.01'), ROUND_HALF_UP):,.2f}"


def _price(x: Line) -> str:
    text = f"{_money(x.unit_price)}/{x.unit}"
    if x.base:
        text = f"{_money(x.base)} + {text}"
    if x.free:
        text += f" past {_num(x.free)} free"
    return text


def _lines(lines: tuple[Line, ...], *, services: bool = True, sign: str = "") -> list[str]:
    out = []
    for x in lines:
        qty = f"{sign}{_num(x.quantity)} {x.unit}"
        out.append(f"  {x.label:<25} {qty:>20}  x {_price(x):<38} {_cents(x.cost):>10}")
        if services:
            out.append(f"      {x.service}")
    return out


def _total(label: str, amount: Decimal, currency: str) -> str:
    return f"  {label:<25} {'':>20}    {'':<38} {_cents(amount):>10} {currency}"


def render(result: Estimate, *, show_scenario: bool = True) -> str:
    """The estimate as text: the base, the steps, and the scenario when asked."""
    info, a, cur = result.provider, result.assumptions, result.provider.currency
    out = [
        f"Gruppetto on {info.title}, {info.region}: monthly cost in {cur}",
        f"Prices: {info.pricing_file}, written down {info.stated_on}; {info.note}.",
        "",
        "Base with no users: one API node, one regional relay, "
        f"a {a.base_volume_gb} GB database volume",
        *_lines(result.base.lines),
        _total("Base total", result.base.total, cur),
        "",
        "Scale-up steps: the list price of what one step adds, past any free allowance",
    ]
    for step in result.steps:
        out.append(f"+ {step.title}: {_cents(step.cost)} {cur} a month")
        out.append(f"    when: {step.trigger}")
        if step.note:
            out.append(f"    note: {step.note}")
        out += _lines(step.lines, services=False, sign="+")
    if show_scenario:
        s, u = result.scenario, result.scenario.usage
        out += [
            "",
            f"Total for {s.races:,} races a month, {s.spectators:,} spectators at once, "
            f"{s.history_months} months of history kept:",
            f"  sized: {u.relay_nodes} regional relays, {u.api_nodes} API replicas "
            f"({s.races_at_once} races at once), {s.races_kept:,} races kept, "
            f"{s.spectator_hours:,} spectator-hours",
            *_lines(s.bill.lines, services=False),
            _total("Total", s.bill.total, cur),
        ]
    return "\n".join(out)
