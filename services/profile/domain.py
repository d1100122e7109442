"""The profile as the domain sees it: typed, named for what each part holds (no I/O).

A profile holds facts with their provenance, contacts, counters of the transaction and
interaction facets, the latest scores, tags and the contact policy. Every timestamp
inside is an ISO 8601 UTC string of fixed shape (:func:`iso`), so strings compare in
time order.

How a profile is stored (one JSON document with short keys, its scores part in a table
of its own) is ``storage.py``'s business, used by the repositories alone. The classes are
slotted dataclasses (the facts of one order version: named tuples, immutable), not
validated models: the consumer decodes thousands per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

OPERATOR = "operator"

#: Single-valued facts of the basic facet (``address`` is an object).
BASIC_FIELDS = (
    "name",
    "gender",
    "birthday",
    "company",
    "title",
    "industry",
    "wechat",
    "qq",
    "timezone",
    "address",
)
#: Multi-valued contacts of the basic facet, each value with its own provenance.
CONTACT_FIELDS = ("mobiles", "phones", "emails")
#: The subjective facts only operators enter.
OPERATOR_SUBJECTIVE = ("style", "contact_tolerance", "membership_interest", "points_interest")


def iso(value: datetime) -> str:
    """A fixed-shape UTC ISO string (naive datetimes are taken as UTC)."""
    offset = value.utcoffset()
    if offset is None:
        value = value.replace(tzinfo=UTC)
    elif offset:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def iso_times(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with each datetime value as :func:`iso` (UTC, with its offset)."""
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()}


@dataclass(slots=True)
class Alternative:
    """A value of a fact that lost to the current one (or is no evidence of it)."""

    value: Any
    source: str | None
    seen_at: str


@dataclass(slots=True)
class Provenance:
    """Where a fact's current value comes from, and the values other sources gave."""

    #: None: the fact is known only by alternatives (no value yet)
    source: str | None
    seen_at: str
    alternatives: list[Alternative] = field(default_factory=list)


@dataclass(slots=True)
class ContactEntry:
    """One mobile / phone / e-mail of a profile and where it was last seen."""

    source: str
    seen_at: str
    verified: bool


@dataclass(slots=True)
class Transactions:
    """Counters of the transaction facet, kept up to date order by order."""

    #: every order version counted once, valid purchase or not
    orders_placed: int = 0
    #: valid purchases (paid, shipped, completed, partially refunded)
    order_count: int = 0
    #: currency -> net amount of valid purchases (a decimal string)
    spent: dict[str, str] = field(default_factory=dict)
    #: currency -> refunded amount (a decimal string)
    refunded: dict[str, str] = field(default_factory=dict)
    refund_count: int = 0
    cancelled_count: int = 0
    unpaid_count: int = 0
    #: placement time of the first and the last valid purchase
    first_order_at: str | None = None
    last_order_at: str | None = None
    #: valid purchases with a discount, promotion or an item below its list price
    discounted_orders: int = 0
    #: category / brand / channel -> valid purchases that had it
    categories: dict[str, int] = field(default_factory=dict)
    brands: dict[str, int] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    #: local hour of placement (as a string) -> valid purchases
    hours: dict[str, int] = field(default_factory=dict)
    #: items with a unit price, and what they cost by currency (a decimal string)
    units: int = 0
    unit_spend: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Interactions:
    """Counters of the interaction facet."""

    reviews: int = 0
    good_reviews: int = 0
    bad_reviews: int = 0
    rating_sum: int = 0
    rated: int = 0
    complaints: int = 0
    tickets: int = 0
    tickets_by_stage: dict[str, int] = field(default_factory=dict)
    returns: int = 0
    disputes: int = 0
    campaign_responses: int = 0
    last_interaction_at: str | None = None


#: the counters of :class:`Interactions` that merges add and unmerges take back
INTERACTION_COUNTERS = (
    "reviews",
    "good_reviews",
    "bad_reviews",
    "rating_sum",
    "rated",
    "complaints",
    "tickets",
    "returns",
    "disputes",
    "campaign_responses",
)


@dataclass(slots=True)
class Scores:
    """The latest segment change applied to a profile (stored apart from the profile)."""

    #: the change's ScoreSnapshot, JSON-ready, with its policy_version and as_of; None
    #: when segment removed the customer
    snapshot: dict[str, Any] | None = None
    #: ``as_of|policy_version``: a change whose version sorts before it is older
    version: str | None = None
    segments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Profile:
    first_seen: str
    #: single-valued facts by name (BASIC_FIELDS, OPERATOR_SUBJECTIVE)
    facts: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Provenance] = field(default_factory=dict)
    #: contact kind (CONTACT_FIELDS) -> value -> entry
    contacts: dict[str, dict[str, ContactEntry]] = field(
        default_factory=lambda: {kind: {} for kind in CONTACT_FIELDS}
    )
    #: contact kinds an operator set: derived observations no longer change them
    locked_contacts: list[str] = field(default_factory=list)
    transactions: Transactions = field(default_factory=Transactions)
    interactions: Interactions = field(default_factory=Interactions)
    scores: Scores = field(default_factory=Scores)
    manual_tags: list[str] = field(default_factory=list)
    rule_tags: list[str] = field(default_factory=list)
    #: the contact policy as ContactPolicy's fields (without customer_id), or None
    policy: dict[str, Any] | None = None
    merged_ids: list[str] = field(default_factory=list)
    #: order id -> {value, source}: addresses of unpaid orders (``addresses.py``)
    unpaid_addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: order id or ``customer:<source>`` -> ``field|code`` warnings (``input_quality.py``)
    input_warnings: dict[str, list[str]] = field(default_factory=dict)

    def region(self) -> tuple[str | None, str | None]:
        """(province, city) of the profile's address."""
        address = self.facts.get("address") or {}
        return address.get("province"), address.get("city")

    def tags(self) -> list[str]:
        return sorted(set(self.manual_tags) | set(self.rule_tags))


class Purchase(NamedTuple):
    """What a valid purchase adds beyond its amounts."""

    categories: list[str]
    brands: list[str]
    channel: str | None
    #: hour of placement in the customer's (or the shop's) timezone
    purchase_hour: int
    discounted: bool
    units: int
    #: units times unit price (a decimal string)
    item_spend: str


class OrderContribution(NamedTuple):
    """What one order version adds to the transaction facet (kept per order, so that a
    newer version can take it back)."""

    status: str
    currency: str
    net_amount: str
    refunded_amount: str
    created_at: str
    #: None unless the order is a valid purchase
    purchase: Purchase | None

    @property
    def valid_purchase(self) -> bool:
        return self.purchase is not None


class OrderRecord(NamedTuple):
    """An order as profile holds it: its newest version and that version's contribution."""

    order_id: str
    customer_id: str
    version: str
    contribution: OrderContribution
