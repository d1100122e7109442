"""Erasure in campaign: a tombstone that keeps only the customer id's digest, reports that
still add up without naming the customer, and nothing published later brings them back."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from devtools.testing import unique, wait_for
from services.campaign.app import create_app
from services.campaign.launch import launch
from services.campaign.models import Campaign
from services.campaign.projection import apply_orders, apply_receipts
from services.campaign.report import build_report
from shared import topics
from shared.bus import Publisher
from shared.db import Database
from shared.erasure import tombstone_key
from shared.events import (
    EnvelopeBase,
    MessageReceipt,
    MessageReceiptRecordedEvent,
    ProfileErasedEvent,
    ProfileErasedPayload,
    ProfileUpdatedEvent,
    ProfileUpdatedPayload,
)
from tests.campaign.factories import (
    NOW,
    broker_settings,
    consume,
    entries,
    feed,
    fixed,
    make_campaign,
    order_event,
    policy_event,
    segment_event,
    settings,
)
from tests.conftest import ADMIN_KEY, api_client

DAY = timedelta(days=1)
HEADERS = {"X-API-Key": ADMIN_KEY}
ERASED = "tb_zhangsan88"


def erasure(customer_id: str = ERASED) -> ProfileErasedEvent:
    return ProfileErasedEvent(
        source="profile",
        key=customer_id,
        data=ProfileErasedPayload(customer_id=customer_id, erasure_id="er-1", requested_at=NOW),
    )


def receipt(message_id: str, customer_id: str, status: str) -> MessageReceiptRecordedEvent:
    return MessageReceiptRecordedEvent(
        source="gateway",
        key=customer_id,
        data=MessageReceipt(message_id=message_id, customer_id=customer_id, status=status, at=NOW),
    )


def rows_naming(db: Database, value: str) -> list[str]:
    """The tables with a row that holds ``value`` anywhere in it."""
    found = []
    with db.sessions() as session:
        for table in inspect(db.engine).get_table_names():
            for row in session.execute(text(f'SELECT * FROM "{table}"')):
                if any(value in repr(v) for v in row):
                    found.append(table)
                    break
    return found


def report_figures(db: Database, campaign_id: str) -> dict[str, Any]:
    with db.sessions() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        report = build_report(session, campaign, NOW + 10 * DAY).model_dump(mode="json")
    report.pop("generated_at", None)
    return report


def test_an_erased_customer_still_counts_in_the_reports_but_is_named_nowhere(
    db: Database,
) -> None:
    customers = [ERASED, "tb_lisi", "tb_wangwu"]
    feed(db, [e for c in customers for e in (segment_event(c, segments=["s1"]), policy_event(c))])
    campaign_id = make_campaign(db, conversion_window_days=7)
    launch(db, campaign_id, settings(), now=fixed())
    message_id = entries(db, campaign_id)[ERASED].message_id
    assert message_id
    with db.unit_of_work() as session:
        apply_orders(
            session,
            [
                order_event("o-1", ERASED, NOW + DAY, "100.00"),
                order_event("o-2", "tb_lisi", NOW + 2 * DAY, "40.00"),
            ],
        )
        apply_receipts(session, [receipt(message_id, ERASED, "delivered")])
    before = report_figures(db, campaign_id)
    assert before["treatment"]["converted"] == 2 and before["delivered"] == 1
    assert "audience" in rows_naming(db, ERASED)  # the scan finds the id where it is

    feed(db, [erasure()])
    assert rows_naming(db, ERASED) == []
    assert report_figures(db, campaign_id) == before

    # late and replayed events about the customer: an order's newer version, a receipt, a
    # policy, a profile update and a score snapshot
    with db.unit_of_work() as session:
        apply_orders(session, [order_event("o-1", ERASED, NOW + DAY, "100.00", status="completed")])
        apply_receipts(session, [receipt(message_id, ERASED, "opened")])
    feed(
        db,
        [
            policy_event(ERASED, {"sms": True}, updated_at=NOW + DAY),
            ProfileUpdatedEvent(
                source="profile",
                key=ERASED,
                data=ProfileUpdatedPayload(customer_id=ERASED, tags=["vip"], province="浙江省"),
            ),
            segment_event(ERASED, segments=["s1"], as_of=NOW + DAY),
            erasure(),  # the erasure itself, delivered again
        ],
    )
    assert rows_naming(db, ERASED) == []
    after = report_figures(db, campaign_id)
    assert after["opened"] == 1
    assert {k: v for k, v in after.items() if k != "opened"} == {
        k: v for k, v in before.items() if k != "opened"
    }
    # a new launch does not find them
    again = make_campaign(db)
    launch(db, again, settings(), now=fixed(NOW + DAY))
    assert set(entries(db, again)) == {"tb_lisi", "tb_wangwu"}


def test_a_trigger_excludes_an_erased_customer_without_naming_them(db: Database) -> None:
    feed(db, [policy_event(ERASED), policy_event("tb_lisi")])
    campaign_id = make_campaign(
        db,
        audience=None,
        trigger={"type": "lifecycle_transition", "from": "active", "to": "silent"},
    )
    launch(db, campaign_id, settings(), now=fixed())
    moved = {"lifecycle": "silent", "previous_lifecycle": "active"}
    # the transition and the erasure in one poll batch: the trigger fires after both
    consume(db, [segment_event(ERASED, **moved), erasure(), segment_event("tb_lisi", **moved)])
    got = entries(db, campaign_id)
    assert {c: (e.outcome, e.reason) for c, e in got.items()} == {
        tombstone_key(ERASED): ("excluded", "erased"),
        "tb_lisi": ("sent", None),
    }
    assert rows_naming(db, ERASED) == []
    # a first purchase delivered after the erasure fires nothing for them
    first = make_campaign(db, audience=None, trigger={"type": "first_purchase"})
    launch(db, first, settings(), now=fixed())
    consume(db, [order_event("o-9", ERASED, NOW - DAY)])
    assert entries(db, first) == {}
    assert rows_naming(db, ERASED) == []


def test_a_merged_customer_erased_id_by_id_leaves_no_alias(db: Database) -> None:
    from tests.campaign.factories import merge_event

    feed(db, [segment_event("tb_a"), segment_event("tb_b"), merge_event("tb_a", ["tb_b"])])
    with db.unit_of_work() as session:
        apply_orders(session, [order_event("o-b", "tb_b", NOW - DAY)])
    # profile erases every id of the merged customer; the merged id's erasure may come first
    feed(db, [erasure("tb_b")])
    feed(db, [erasure("tb_a")])
    assert rows_naming(db, "tb_a") == [] and rows_naming(db, "tb_b") == []
    # a late order of the merged id is kept under its own digest
    with db.unit_of_work() as session:
        apply_orders(session, [order_event("o-b2", "tb_b", NOW - DAY)])
    assert rows_naming(db, "tb_b") == []


def _publish(publisher: Publisher, batch: list[tuple[str, EnvelopeBase]]) -> None:
    publisher.publish_all([(t, e.key, e.model_dump_json(by_alias=True).encode()) for t, e in batch])


@pytest.mark.kafka
def test_an_erased_customer_id_leaves_the_sqlite_files_and_stays_erased(
    broker: Any, namespace: str, sqlite_url: str, tmp_path: Path
) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    customer = unique("tb_zhangsan")
    needle = customer.encode()

    def in_files() -> list[str]:
        files = [path, path.with_name(path.name + "-wal")]
        return [f.name for f in files if f.exists() and needle in f.read_bytes()]

    app = create_app(broker_settings(broker, namespace, sqlite_url, tmp_path))
    runtime = app.state.runtime
    history: list[tuple[str, EnvelopeBase]] = [
        (topics.SEGMENTS, segment_event(customer, segments=["s1"])),
        (topics.PROFILES, policy_event(customer)),
        (topics.ORDERS, order_event("o-1", customer, NOW - DAY)),
        (topics.CAMPAIGN_RECEIPTS, receipt("m-1", customer, "delivered")),
    ]
    publisher = Publisher(broker.bootstrap_servers, namespace)
    with api_client(app) as client:
        _publish(publisher, history)

        def projected() -> bool:
            body = client.get(f"/v1/audience/{customer}", headers=HEADERS).json()
            return bool(body.get("contact_policy")) and runtime.consumers[0].processed_count >= 4

        wait_for(projected, timeout=30, what="the customer projected")
        assert in_files()  # the scan finds the id where it is
        _publish(publisher, [(topics.PROFILES, erasure(customer))])
        # campaign publishes nothing on an erasure: its checkpoint leaves no copy anywhere
        wait_for(lambda: in_files() == [], timeout=20, what="no copy of the customer id")
        erased = client.get(f"/v1/audience/{customer}", headers=HEADERS)
        assert erased.status_code == 200 and erased.json()["erased"] is True

        # every event about the customer delivered again (fresh ids: a replay)
        done = runtime.consumers[0].processed_count
        _publish(
            publisher, [(t, e.model_copy(update={"event_id": uuid.uuid4()})) for t, e in history]
        )
        wait_for(
            lambda: runtime.consumers[0].processed_count >= done + len(history),
            timeout=30,
            what="the replay consumed",
        )
        body = client.get(f"/v1/audience/{customer}", headers=HEADERS).json()
        assert body["erased"] is True and body["contact_policy"] is None
        assert body["segments"] == [] and body["rfm_segment"] is None
        with runtime.db.sessions() as session:
            tables = [
                table
                for table in inspect(runtime.db.engine).get_table_names()
                if any(
                    customer in repr(tuple(row))
                    for row in session.execute(text(f'SELECT * FROM "{table}"'))
                )
            ]
        assert tables == []
    publisher.close()
