"""Inline audience rules: the shared rule language (:mod:`shared.rules`) over the
audience projection's rows, compiled once per launch into a predicate over one row (pure).

Rows hold money in 1/10,000 units (``monetary_e4``); rule literals are converted to match.
A customer missing a value never satisfies a comparison on it (``ne`` and ``not_in``
included), so ``{"not": ...}`` is the way to say "not known to be".

Segment's predictive CLV (p_alive, predicted CLV) is deliberately not in the catalogue: a
customer's ``segment.changed`` is published only when their own scores or memberships
change, so a prediction copied from it would go stale or outlive its withdrawal. Audiences
reach predictions through custom segments (``segments contains likely-gone``), whose
memberships segment publishes after every CLV run.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from shared import rules
from shared.rules import Predicate

__all__ = ["CATALOGUE", "FIELDS", "Predicate", "Rule", "compile_rule", "to_e4"]

CATALOGUE = rules.Catalogue(
    numbers=(
        "r_score",
        "f_score",
        "m_score",
        "recency_days",
        "frequency",
    ),
    money=("monetary",),
    text=("rfm_segment", "lifecycle_stage", "value_quadrant", "province", "city", "currency"),
    lists=("tags", "segments"),
    keys={"monetary": "monetary_e4"},
    money_e4=True,
)
FIELDS = CATALOGUE.names

Rule = Annotated[rules.Rule, CATALOGUE]


def compile_rule(rule: rules.Rule) -> Predicate:
    """A fast predicate over an audience row (a mapping with the projection's columns)."""
    return CATALOGUE.predicate(rule)


def to_e4(amount: Decimal | int | str) -> int:
    """A money amount as integer 1/10,000 units."""
    return int(Decimal(amount).scaleb(4).to_integral_value())
