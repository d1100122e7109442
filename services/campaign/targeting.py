"""Who gets a message, when, on which channel, saying what (pure functions, no I/O).

The launch decides for each customer of the audience snapshot, in this order:

1. ``erased``: the customer was erased (GDPR / PIPL) -> excluded;
2. ``do_not_disturb`` -> excluded;
3. ``no_consent``: no consent on any of the campaign's channels -> excluded;
4. ``frequency_cap``: already contacted ``max_contacts`` times (by any campaign) in the
   rolling ``period_days`` -> excluded;
5. ``holdout``: the deterministic control group (a hash of campaign id and customer id
   below ``holdout_share``) -> held out, never contacted, measured for the uplift;
6. otherwise contacted: one message request on the first consented campaign channel,
   the other consented ones as fallbacks; inside the customer's quiet hours the request
   carries ``not_before`` = the end of the quiet hours (deferred, not dropped).

The holdout is drawn after the eligibility rules so that treatment and control are
both "customers we were allowed to contact": their conversion rates are comparable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EXCLUSION_REASONS = ("erased", "do_not_disturb", "no_consent", "frequency_cap")

#: Per-customer variables a template may use (non-personal: the gateway resolves addresses).
CUSTOMER_VARIABLES = frozenset(
    {
        "customer_id",
        "rfm_segment",
        "lifecycle_stage",
        "value_quadrant",
        "province",
        "city",
        "r_score",
        "f_score",
        "m_score",
    }
)

# {{ name }} or {{ name | fallback text }}: the fallback stands in for a missing or empty
# value (e.g. {{ city | 亲爱的顾客 }}); it may hold anything but "}}"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*((?:(?!\}\}).)*?)\s*)?\}\}")


def holdout_bucket(campaign_id: str, customer_id: str) -> float:
    """A stable number in [0, 1) per (campaign, customer): the same on every run and replica."""
    digest = hashlib.blake2b(f"{campaign_id}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_holdout(campaign_id: str, customer_id: str, share: float) -> bool:
    return share > 0 and holdout_bucket(campaign_id, customer_id) < share


def template_variables(template: str) -> set[str]:
    """The names of a template's ``{{ name }}`` / ``{{ name | fallback }}`` placeholders."""
    return {name for name, _ in _PLACEHOLDER.findall(template)}


def _value(variables: Mapping[str, Any], name: str, fallback: str | None) -> str:
    value = variables.get(name)
    text = "" if value is None else str(value)
    return text if text or fallback is None else fallback


def render(template: str, variables: Mapping[str, Any]) -> str:
    """Fill the placeholders; a missing or empty value renders as the placeholder's
    fallback, or as an empty string if it has none."""
    return _PLACEHOLDER.sub(lambda m: _value(variables, m.group(1), m.group(2)), template)


def compile_template(template: str) -> Callable[[Mapping[str, Any]], str]:
    """:func:`render` for one template, split once into text and placeholders."""
    parts = _PLACEHOLDER.split(template)  # text, name, fallback, text, name, fallback, ..., text
    texts, names, fallbacks = parts[0::3], parts[1::3], parts[2::3]
    if not names:
        return lambda variables: template

    def fill(variables: Mapping[str, Any]) -> str:
        out = [texts[0]]
        for name, fallback, text in zip(names, fallbacks, texts[1:], strict=True):
            out.append(_value(variables, name, fallback))
            out.append(text)
        return "".join(out)

    return fill


def quiet_until(now: datetime, quiet_hours: Mapping[str, Any] | None) -> datetime | None:
    """The end of the quiet hours (UTC) if ``now`` falls inside them, else None.

    ``start``/``end`` are HH:MM local times in ``timezone``; ``22:00``-``08:00`` wraps midnight.
    """
    if not quiet_hours:
        return None
    try:
        zone = ZoneInfo(quiet_hours.get("timezone") or "Asia/Shanghai")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("Asia/Shanghai")
    start, end = _hhmm(quiet_hours["start"]), _hhmm(quiet_hours["end"])
    if start == end:
        return None
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    inside = (start <= clock < end) if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    until = datetime.combine(local.date(), end, tzinfo=zone)
    if until <= local:
        until = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=zone)
    return until.astimezone(UTC)


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def consented_channels(
    campaign_channels: Sequence[str], policy: Mapping[str, Any] | None, assume_consent: bool
) -> list[str]:
    """The campaign's channels (in its fallback order) the customer consented to."""
    if policy is None:
        return list(campaign_channels) if assume_consent else []
    consents = policy.get("channels") or {}
    return [c for c in campaign_channels if (consents.get(c) or {}).get("consented")]


@dataclass(frozen=True)
class Decision:
    outcome: str  # sent | holdout | excluded
    reason: str | None = None
    channels: tuple[str, ...] = ()
    not_before: datetime | None = None


@dataclass(frozen=True)
class CapDefaults:
    max_contacts: int | None
    period_days: int


#: how far back the frequency cap looks at most (a policy's longer period is capped to it,
#: so the launch never has to read more than this much contact history)
MAX_CAP_PERIOD_DAYS = 366


def frequency_limit(
    policy: Mapping[str, Any] | None, defaults: CapDefaults
) -> tuple[int | None, int]:
    """``(max contacts, rolling period in days)`` for one customer."""
    if policy is not None and policy.get("max_contacts") is not None:
        period = int(policy.get("period_days") or defaults.period_days)
        return int(policy["max_contacts"]), min(period, MAX_CAP_PERIOD_DAYS)
    return defaults.max_contacts, min(defaults.period_days, MAX_CAP_PERIOD_DAYS)


def over_cap(
    now: datetime,
    recent_contacts: Sequence[datetime],
    policy: Mapping[str, Any] | None,
    defaults: CapDefaults,
) -> bool:
    limit, period = frequency_limit(policy, defaults)
    if limit is None:
        return False
    since = now - timedelta(days=period)
    return sum(1 for at in recent_contacts if at >= since) >= limit


def decide(
    *,
    campaign_id: str,
    customer_id: str,
    erased: bool,
    policy: Mapping[str, Any] | None,
    campaign_channels: Sequence[str],
    holdout_share: float,
    recent_contacts: Sequence[datetime],
    now: datetime,
    cap_defaults: CapDefaults,
    assume_consent: bool = False,
) -> Decision:
    """The launch decision for one customer (see the module docstring for the order)."""
    if erased:
        return Decision("excluded", "erased")
    if policy is not None and policy.get("do_not_disturb"):
        return Decision("excluded", "do_not_disturb")
    channels = consented_channels(campaign_channels, policy, assume_consent)
    if not channels:
        return Decision("excluded", "no_consent")
    if over_cap(now, recent_contacts, policy, cap_defaults):
        return Decision("excluded", "frequency_cap")
    if in_holdout(campaign_id, customer_id, holdout_share):
        return Decision("holdout", "holdout")
    not_before = quiet_until(now, (policy or {}).get("quiet_hours"))
    return Decision("sent", None, tuple(channels), not_before)
