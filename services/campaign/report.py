"""The campaign report: reach, deliveries, and conversion of treatment against the holdout.

Definitions (every number can be recomputed from the entries and the orders projection):

- targeted: customers the audience held when launched (every entry: contacted, held
  out, or excluded); excluded: by reason; holdout: the control group; sent: contacted
  (message requested), of which deferred: inside quiet hours (``not_before`` set).
- delivered / failed / opened / clicked / unsubscribed: distinct messages of the
  campaign with such a receipt.
- treatment = the contacted customers; control = the holdout. A member converted when
  they have a valid order (paid, shipped, completed, partially refunded) paid within
  ``[entered_at, entered_at + conversion_window_days]``; revenue = the net amounts of
  those orders. A customer entered several times (re-entry) counts once per entry; a
  merged customer once per occasion (``merges.py``: only ``counted`` entries are read).
- returning customers: members who had a valid order paid before they entered; the
  returning-customer rate = those of them who converted / returning customers.
- uplift: treatment rate - control rate (Newcombe hybrid score 95% interval) and
  treatment rate / control rate - 1 (Katz log 95% interval); see ``stats``.
- skipped_triggers (triggered campaigns): occurrences not entered, by reason
  (``skips.py``).
- revenue per targeted customer = treatment revenue / targeted.
- final once every entry's window has closed (and the campaign takes no new entries);
  provisional before.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from services.campaign.launch import Tally
from services.campaign.models import Campaign
from services.campaign.repository import Entries
from services.campaign.schemas import CampaignReport, GroupReport, Uplift
from services.campaign.skips import counts as skip_counts
from services.campaign.stats import newcombe_difference, relative_uplift_interval, wilson
from shared.events import ensure_aware

METHOD = (
    "conversion = a valid order paid within [entered_at, entered_at + window]; rates with "
    "Wilson 95% intervals; absolute uplift with Newcombe's hybrid score interval (method 10); "
    "relative uplift with the Katz log risk-ratio interval"
)


def _money(e4: int) -> str:
    return str(Decimal(e4).scaleb(-4).quantize(Decimal("0.01")))


def _per(e4: int, n: int) -> str | None:
    return str((Decimal(e4).scaleb(-4) / n).quantize(Decimal("0.01"))) if n else None


def build_report(session: Session, campaign: Campaign, now: datetime) -> CampaignReport:
    entries = Entries(session)
    reach = Tally.of_entries(entries.counts(campaign.campaign_id))
    receipts = entries.receipt_counts(campaign.campaign_id)

    # each customer's valid orders, sorted by payment time
    orders: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    currencies: set[str] = set()
    for customer_id, paid_at, net_e4, currency in entries.member_orders(campaign.campaign_id):
        if paid_at is not None:
            orders[customer_id].append((ensure_aware(paid_at), int(net_e4)))
            currencies.add(currency)
    for customer_orders in orders.values():
        customer_orders.sort()

    window = timedelta(days=campaign.conversion_window_days)
    groups = {"sent": _Group(), "holdout": _Group()}
    last_entry: datetime | None = None
    for customer_id, entered_at, outcome in entries.measured(campaign.campaign_id):
        entered = ensure_aware(entered_at)
        last_entry = entered if last_entry is None or entered > last_entry else last_entry
        group = groups[outcome]
        group.customers += 1
        history = orders.get(customer_id, [])
        times = [t for t, _ in history]
        start = bisect.bisect_left(times, entered)
        end = bisect.bisect_right(times, entered + window)
        returning = start > 0
        converted = end > start
        group.converted += converted
        group.revenue_e4 += sum(amount for _, amount in history[start:end])
        group.returning += returning
        group.returning_converted += returning and converted

    closes = last_entry + window if last_entry is not None else None
    open_for_entries = campaign.status in ("draft", "scheduled") or (
        campaign.status == "running" and (bool(campaign.trigger) or _recurring(campaign))
    )
    final = closes is not None and now >= closes and not open_for_entries

    treatment, control = groups["sent"], groups["holdout"]
    absolute = relative = incremental = None
    if treatment.customers and control.customers:
        p1 = treatment.converted / treatment.customers
        p0 = control.converted / control.customers
        absolute = p1 - p0
        relative = (p1 / p0 - 1) if p0 > 0 else None
        per_t = Decimal(treatment.revenue_e4).scaleb(-4) / treatment.customers
        per_c = Decimal(control.revenue_e4).scaleb(-4) / control.customers
        incremental = str((per_t - per_c).quantize(Decimal("0.01")))
    return CampaignReport(
        campaign_id=campaign.campaign_id,
        status=campaign.status,
        final=final,
        window_closes_at=closes,
        conversion_window_days=campaign.conversion_window_days,
        as_of=now,
        currency=(next(iter(currencies)) if len(currencies) == 1 else "mixed")
        if currencies
        else None,
        targeted=reach.targeted,
        excluded=reach.excluded,
        skipped_triggers=skip_counts(session, campaign.campaign_id) if campaign.trigger else {},
        holdout=reach.holdout,
        sent=reach.sent,
        deferred=reach.deferred,
        delivered=receipts.get("delivered", 0),
        failed=receipts.get("failed", 0),
        opened=receipts.get("opened", 0),
        clicked=receipts.get("clicked", 0),
        unsubscribed=receipts.get("unsubscribed", 0),
        treatment=treatment.report(),
        control=control.report(),
        uplift=Uplift(
            absolute=absolute,
            absolute_ci95=newcombe_difference(
                treatment.converted, treatment.customers, control.converted, control.customers
            ),
            relative=relative,
            relative_ci95=relative_uplift_interval(
                treatment.converted, treatment.customers, control.converted, control.customers
            ),
            incremental_revenue_per_customer=incremental,
        ),
        revenue_per_targeted_customer=_per(treatment.revenue_e4, reach.targeted),
        method=METHOD,
    )


def _recurring(campaign: Campaign) -> bool:
    return campaign.schedule.get("type") == "recurring"


class _Group:
    def __init__(self) -> None:
        self.customers = 0
        self.converted = 0
        self.revenue_e4 = 0
        self.returning = 0
        self.returning_converted = 0

    def report(self) -> GroupReport:
        n = self.customers
        return GroupReport(
            customers=n,
            converted=self.converted,
            conversion_rate=self.converted / n if n else None,
            conversion_rate_ci95=wilson(self.converted, n),
            revenue=_money(self.revenue_e4),
            revenue_per_customer=_per(self.revenue_e4, n),
            returning_customers=self.returning,
            returning_converted=self.returning_converted,
            returning_customer_rate=self.returning_converted / self.returning
            if self.returning
            else None,
        )
