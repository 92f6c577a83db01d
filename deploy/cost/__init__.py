"""``gruppetto cost``: what Gruppetto costs a month on a provider, idle and as it grows.

The model has three parts:

* **Prices** (:mod:`.pricing`): one TOML file per provider in ``deploy/pricing/``, each
  price with its source URL, the date it stands for and the day it was read there (or why
  it was not re-read), checked on load.
* **Workload and sizing** (:mod:`.model`): what a race, a spectator and a relay weigh,
  from the design targets and measurements (``tests/deploy/test_cost.py`` measures the
  history's bytes per fix with the real ``cloud.history`` code), and how races and
  spectators turn into servers, volumes and traffic.
* **Output** (:mod:`.render`, :mod:`.cli`): text tables or one JSON object.

:func:`estimate` gives the base (no users), each scale-up step (what one step adds and
what triggers it) and the total for a scenario. docs/cost.md explains the model.
"""

from __future__ import annotations

from .cli import cost
from .model import Assumptions, Bill, Estimate, Line, Scenario, Step, Usage, bill, estimate
from .pricing import (
    ITEMS,
    PRICING_DIR,
    CostError,
    PricingError,
    Provider,
    UnknownProviderError,
    load_pricing,
    load_provider,
    providers,
)
from .render import render

__all__ = [
    "ITEMS",
    "PRICING_DIR",
    "Assumptions",
    "Bill",
    "CostError",
    "Estimate",
    "Line",
    "PricingError",
    "Provider",
    "Scenario",
    "Step",
    "UnknownProviderError",
    "Usage",
    "bill",
    "cost",
    "estimate",
    "load_pricing",
    "load_provider",
    "providers",
    "render",
]
