"""Tag rules: the shared rule language (:mod:`shared.rules`) over one profile's facts
(:func:`services.profile.views.facts_for_rules`), evaluated per profile (pure).

Money facts may be decimal strings and dates ISO 8601 strings; both are read as their
values. A profile missing a value never satisfies a comparison on it (``not`` inverts).
"""

from __future__ import annotations

from typing import Annotated, Any

from services.profile.config import Settings
from services.profile.domain import Profile
from services.profile.views import facts_for_rules
from shared import rules
from shared.rules import Predicate

__all__ = ["CATALOGUE", "FIELDS", "Rule", "RuleBook", "matches", "parse_rule"]

CATALOGUE = rules.Catalogue(
    numbers=(
        "order_count",
        "orders_placed",
        "refund_count",
        "cancelled_count",
        "complaints",
        "tickets",
        "reviews",
        "good_reviews",
        "bad_reviews",
        "returns",
        "disputes",
        "r_score",
        "f_score",
        "m_score",
        "recency_days",
        "frequency",
        "discount_share",
        "average_rating",
    ),
    money=("total_spent", "average_order_value", "monetary"),
    dates=("first_order_at", "last_order_at"),
    text=(
        "rfm_segment",
        "lifecycle_stage",
        "value_quadrant",
        "purchase_bucket",
        "province",
        "city",
        "price_band",
        "price_sensitivity",
        "preferred_channel",
        "gender",
        "style",
        "contact_tolerance",
    ),
    booleans=("membership_interest", "points_interest"),
    lists=("categories", "brands", "channels", "segments"),
)
FIELDS = CATALOGUE.names

Rule = Annotated[rules.Rule, CATALOGUE]


def parse_rule(raw: Any) -> rules.Rule:
    """Validate a JSON tag rule (raises pydantic.ValidationError naming each bad part)."""
    return CATALOGUE.parse(raw)


def matches(rule: rules.Rule, facts: dict[str, Any]) -> bool:
    """Whether one profile's facts satisfy ``rule``."""
    return CATALOGUE.matches(rule, facts)


class RuleBook:
    """The tag rules, parsed once per transaction."""

    def __init__(self, rules: list[dict[str, Any]]) -> None:
        # compiled once: a batch tests every rule against every profile it touches
        self.rules: list[tuple[str, Predicate]] = [
            (r["tag"], CATALOGUE.predicate(parse_rule(r["rule"]))) for r in rules
        ]

    def tags_for(self, profile: Profile, settings: Settings) -> list[str]:
        if not self.rules:
            return []
        facts = facts_for_rules(profile, settings)
        return sorted({tag for tag, test in self.rules if test(facts)})
