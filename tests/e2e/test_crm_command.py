"""The ``crm`` command against the real processes on the real broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kafka
import pytest
from typer.testing import CliRunner

from crmctl import app as crm_app
from crmctl.app import app
from devtools.broker import EmbeddedBroker
from devtools.testing import unique, wait_for
from shared.exports import ANSWERING_SERVICES
from tests.conftest import ADMIN_KEY
from tests.e2e.system import RunningSystem, running_system

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

CSV_HEADER = "order_id,customer_id,status,created_at,paid_at,updated_at,currency,total_amount,channel,buyer_name,buyer_mobile,province,city"


@pytest.fixture(scope="module")
def system(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSystem]:
    with running_system(broker, tmp_path_factory.mktemp("crm")) as running:
        running.wait_ready(90)
        yield running


def options_of(system: RunningSystem, key: str = ADMIN_KEY) -> list[str]:
    """The ``crm`` options that point it at ``system``."""
    options = [f"--{s}-url={system.url(s, '')}" for s in system.ports]
    options += [f"--api-key={key}", f"--bootstrap-servers={system.bootstrap_servers}"]
    return [*options, f"--namespace={system.namespace}"]


def crm(system: RunningSystem, *args: str, key: str = ADMIN_KEY, input: str | None = None) -> Any:
    """Run ``crm ... --json`` against the system; returns (exit code, parsed stdout)."""
    options = options_of(system, key)
    result = CliRunner().invoke(app, [*options, *args, "--json"], input=input)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, json.loads(lines[-1]) if lines else None


def ok(system: RunningSystem, *args: str) -> Any:
    code, body = crm(system, *args)
    assert code == 0, body
    return body


@pytest.fixture(scope="module")
def shop(system: RunningSystem, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three paid orders of two customers and one bad row, imported with ``crm import``."""
    run = unique("cli")
    rows = [
        f"{run}-o1,{run}-a,paid,2026-11-01T10:00:00+08:00,2026-11-01T10:01:00+08:00,2026-11-01T10:01:00+08:00,CNY,199.00,tmall,张三,13800138000,浙江省,杭州市",
        f"{run}-o2,{run}-a,paid,2026-11-11T00:00:05+08:00,2026-11-11T00:01:00+08:00,2026-11-11T00:01:00+08:00,CNY,88.00,tmall,张三,13800138000,浙江省,杭州市",
        f"{run}-o3,{run}-b,paid,2026-06-18T20:00:00+08:00,2026-06-18T20:00:30+08:00,2026-06-18T20:00:30+08:00,CNY,520.00,jd,李四,13900139000,广东省,深圳市",
        f"{run}-o4,{run}-c,teleported,2026-06-18T20:00:00+08:00,,2026-06-18T20:00:30+08:00,CNY,1.00,jd,,,广东省,深圳市",
    ]
    path = tmp_path_factory.mktemp("csv") / "orders.csv"
    path.write_text("\n".join([CSV_HEADER, *rows]) + "\n", encoding="utf-8")
    job = ok(system, "import", "orders", str(path))
    return {"run": run, "job": job, "customers": [f"{run}-a", f"{run}-b"]}


def test_import_reports_accepted_and_rejected_rows(
    system: RunningSystem, shop: dict[str, Any]
) -> None:
    job = shop["job"]
    assert job["status"] == "completed"
    assert (job["rows_read"], job["accepted"], job["rejected"]) == (4, 3, 1)
    assert job["rejections"][0]["row"] == 5
    assert job["rejections"][0]["reasons"][0]["field"] == "status"
    assert any("rejected" in note for note in job["notes"])
    assert (job["warned"], job["warnings"]) == (0, [])


def test_reports_count_the_imported_customers_and_write_charts(
    system: RunningSystem, shop: dict[str, Any], tmp_path: Path
) -> None:
    a, b = shop["customers"]
    wait_for(
        lambda: (
            system.get("segment", f"/v1/customers/{b}/scores").status_code == 200
            and system.get("segment", f"/v1/customers/{a}/scores").json().get("frequency") == 2
        ),
        timeout=30,
        what="segment to score the imported customers",
    )
    png = tmp_path / "rfm.png"
    rfm = ok(system, "report", "rfm", "--png", str(png))
    assert sum(cell["customers"] for cell in rfm["rows"][0]["grid"]) == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    funnel = ok(system, "report", "funnel")
    assert {row["bucket"]: row["customers"] for row in funnel["rows"]}["2"] == 1
    regions = ok(system, "report", "regions", "--png", str(tmp_path / "regions.png"))
    assert {row["province"]: row["customers"] for row in regions["rows"]} == {
        "广东省": 1,
        "浙江省": 1,
    }
    for name in ("lifecycle", "quadrants"):
        body = ok(system, "report", name, "--png", str(tmp_path / f"{name}.png"))
        assert sum(row["customers"] for row in body["rows"]) == 2
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert ok(system, "rescore")["customers"] == 2


def test_export_then_erase_a_customer(system: RunningSystem, shop: dict[str, Any]) -> None:
    _, b = shop["customers"]
    wait_for(
        lambda: system.get("profile", f"/v1/customers/{b}").status_code == 200,
        timeout=30,
        what="profile to know the customer",
    )
    wait_for(
        lambda: system.get("segment", f"/v1/customers/{b}/scores").status_code == 200,
        timeout=30,
        what="segment to know the customer",
    )
    exported = ok(system, "export", b)  # the complete export: every service's part
    assert exported["status"] == "complete"
    assert exported["services"] == dict.fromkeys(("profile", *ANSWERING_SERVICES), "done")
    document = exported["document"]
    assert exported["customer_id"] == b and document["profile"]["profile"]["customer_id"] == b
    assert [o["order_id"] for o in document["ingest"]["orders"]] == [f"{shop['run']}-o3"]
    assert document["segment"]["scores"][0]["customer_id"] == b
    assert "李四" in json.dumps(document, ensure_ascii=False)
    profile_only = ok(system, "export", b, "--profile-only")
    assert profile_only["profile"]["customer_id"] == b and "document" not in profile_only
    code, body = crm(system, "erase", b, input="y\n")
    assert code == 2 and "--yes" in body["error"]  # --json, no terminal: refused, not asked
    assert system.get("profile", f"/v1/customers/{b}").status_code == 200
    erased = ok(system, "erase", b, "--yes")
    assert erased["customer_ids"] == 1
    code, body = crm(system, "export", b)  # nothing is held about an erased customer
    assert code == 1 and body["problem"]["status"] == 404
    code, body = crm(system, "export", b, "--profile-only")
    assert code == 1 and body["problem"]["status"] == 404
    code, body = crm(system, "export", unique("nobody"))
    assert code == 1 and body["problem"]["status"] == 404


def test_a_wrong_key_fails(system: RunningSystem) -> None:
    code, body = crm(system, "segments", "list", key="not-a-key")
    assert code == 1
    assert body["problem"]["status"] == 401


def test_segments_and_a_campaign_with_a_holdout(
    system: RunningSystem, shop: dict[str, Any]
) -> None:
    segment_id = unique("seg")
    created = system.post(
        "segment",
        "/v1/segments",
        json={
            "segment_id": segment_id,
            "name": "浙江",
            "rule": {"field": "province", "op": "eq", "value": "浙江省"},
        },
    )
    assert created.status_code == 201, created.text
    assert segment_id in [s["segment_id"] for s in ok(system, "segments", "list")]
    shown = ok(system, "segments", "show", segment_id, "--members", "10")
    assert shown["members"] and shown["member_count"] == 1
    body = {
        "name": "浙江 care",
        "purpose": "care",
        "audience": {"segment_id": segment_id},
        "channels": ["sms"],
        "content": {"template": "你好"},
        "schedule": {"type": "now"},
        "holdout_share": 0.5,
        "conversion_window_days": 7,
    }
    campaign = system.post("campaign", "/v1/campaigns", json=body).json()
    campaign_id = campaign["campaign_id"]
    assert campaign_id in [c["campaign_id"] for c in ok(system, "campaigns", "list")]
    assert ok(system, "campaigns", "show", campaign_id)["holdout_share"] == 0.5
    launched = ok(system, "campaigns", "launch", campaign_id)
    assert launched["status"] == "running"
    report = ok(system, "campaigns", "report", campaign_id)
    assert report["campaign_id"] == campaign_id
    assert report["targeted"] == launched["targeted"]
    code, body = crm(system, "campaigns", "show", unique("nope"))
    assert code == 1 and body["problem"]["status"] == 404


def test_status_dead_letters_and_redrive(system: RunningSystem, shop: dict[str, Any]) -> None:
    topic = system.namespace + "crm.raw.orders.v1"
    producer = kafka.KafkaProducer(bootstrap_servers=system.bootstrap_servers)
    poison = json.dumps({"order_id": unique("bad")}).encode()
    producer.send(topic, key=b"k-1", value=poison).get(15)
    producer.close()

    def poisoned() -> list[dict[str, Any]] | None:
        rows = ok(system, "deadletters", "list")
        mine = [r for r in rows if r["origin"].startswith(topic)]
        return mine or None

    first = wait_for(poisoned, timeout=30, what="the poison record in the dead letters")
    assert len(first) == 1
    shown = ok(system, "deadletters", "show", first[0]["event_id"][:12])
    # the dead letter holds the record's digest; show reads the record from its topic
    assert "value" not in shown["data"] and "key" not in shown["data"]
    assert shown["original"] == {"key": "k-1", "value": poison.decode()}

    redriven = ok(system, "deadletters", "redrive", first[0]["event_id"])
    assert redriven[0]["topic"] == topic
    # still invalid: ingest dead-letters the re-driven copy again, from its new offset
    again = wait_for(
        lambda: (rows := poisoned()) is not None and len(rows) == 2 and rows,
        timeout=30,
        what="the re-driven record to come back",
    )
    assert again[1]["origin"] == f"{topic}[{redriven[0]['partition']}]@{redriven[0]['offset']}"

    def settled() -> dict[str, Any] | None:
        status = ok(system, "status")
        lag = status["consumer_lag"]
        ingest = [
            r for r in lag if r["group"] == system.namespace + "crm-ingest" and r["topic"] == topic
        ]
        return status if ingest and all(r["lag"] == 0 for r in lag) else None

    status = wait_for(settled, timeout=60, what="every consumer group to catch up")
    assert status["healthy"] is True
    assert {s["service"] for s in status["services"] if s["ready"]} == set(system.ports)
    assert status["dead_letters"] == 2
    assert {r["group"] for r in status["consumer_lag"]} >= {
        system.namespace + "crm-ingest",
        system.namespace + "crm-segment",
        system.namespace + "crm-profile",
    }
    assert all(r["highwater"] is not None for r in status["consumer_lag"])


def test_replay_republishes_and_the_consumers_dedupe(
    system: RunningSystem, shop: dict[str, Any]
) -> None:
    a = shop["customers"][0]

    def orders_of(customer: str) -> Any:
        body = system.get("profile", f"/v1/customers/{customer}").json()
        return body.get("transactions", {}).get("order_count")

    wait_for(
        lambda: orders_of(a) == 2,
        timeout=30,
        what="profile to count a's two orders",
    )

    def published(status: dict[str, Any]) -> int:
        return sum(
            r["highwater"] or 0
            for r in status["consumer_lag"]
            if r["group"] == system.namespace + "crm-profile"
        )

    before = published(ok(system, "status"))
    replayed = ok(system, "replay", "--kind", "order")
    assert replayed["queued"] >= 3  # the shop's orders at least

    def caught_up() -> dict[str, Any] | None:
        status = ok(system, "status")
        done = published(status) >= before + 3 and all(
            r["lag"] == 0 for r in status["consumer_lag"]
        )
        return status if done else None

    wait_for(caught_up, timeout=90, what="the replayed orders to be published and consumed")
    # every order arrived twice: counted once
    assert orders_of(a) == 2
    assert system.get("segment", f"/v1/customers/{a}/scores").json()["frequency"] == 2
    code, body = crm(system, "replay", "--kind", "nonsense")
    assert code == 1 and body["problem"]["status"] == 422


def test_status_fails_when_a_service_is_down(system: RunningSystem) -> None:
    options = [f"--{s}-url={system.url(s, '')}" for s in system.ports if s != "campaign"]
    result = CliRunner().invoke(
        app,
        [*options, "--campaign-url=http://127.0.0.1:9", f"--api-key={ADMIN_KEY}",
         f"--bootstrap-servers={system.bootstrap_servers}", f"--namespace={system.namespace}", "status", "--json"],
    )  # fmt: skip
    assert result.exit_code == 1
    status = json.loads(result.stdout)
    assert status["healthy"] is False
    assert [s["service"] for s in status["services"] if not s["up"]] == ["campaign"]


def test_keys_create_use_rotate_revoke(system: RunningSystem) -> None:
    name = unique("ops-key")
    issued = ok(system, "keys", "create", name, "--scope", "segment:read")
    key_id, secret = issued["key_id"], issued["api_key"]
    assert key_id in [k["key_id"] for k in ok(system, "keys", "list")]
    # the new key reaches segment through crm.apikeys.v1; it may read segments, nothing else
    wait_for(
        lambda: crm(system, "segments", "list", key=secret)[0] == 0, timeout=30, what="key accepted"
    )
    code, body = crm(system, "rescore", key=secret)
    assert code == 1 and body["problem"]["status"] == 403
    rotated = ok(system, "keys", "rotate", key_id)
    assert rotated["api_key"] != secret
    ok(system, "keys", "revoke", key_id)
    events = [entry for entry in ok(system, "keys", "audit", key_id)["audit"]]
    assert len(events) == 3
    wait_for(
        lambda: crm(system, "segments", "list", key=rotated["api_key"])[0] == 1,
        timeout=30,
        what="revocation",
    )


# last: its customers would count in the reports above (one system per module)
def test_import_passes_every_warned_row_through_from_every_page(
    system: RunningSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crm_app, "IMPORT_PAGE", 1)  # one row a page: the CLI must follow them

    def orders_file(run: str) -> Path:
        rows = [
            f"{run}-o{i},{run}-w{i},paid,2026-11-01T10:00:00+08:00,2026-11-01T10:01:00+08:00,2026-11-01T10:01:00+08:00,CNY,10.00,tmall,王五,{phone},浙江省,杭州市"
            for i, phone in enumerate(["12345", "13800138000", "999", "13900139000"])
        ] + [
            f"{run}-bad,{run}-x,teleported,2026-11-01T10:00:00+08:00,,2026-11-01T10:01:00+08:00,CNY,1.00,jd,,,,"
        ]
        path = tmp_path / f"{run}.csv"
        path.write_text("\n".join([CSV_HEADER, *rows]) + "\n", encoding="utf-8")
        return path

    run = unique("warn")
    job = ok(system, "import", "orders", str(orders_file(run)))
    assert (job["accepted"], job["rejected"], job["warned"]) == (4, 1, 2)
    assert [(w["row"], w["order_id"]) for w in job["warnings"]] == [
        (2, f"{run}-o0"),
        (4, f"{run}-o2"),
    ]
    assert {r["field"] + ":" + r["code"] for w in job["warnings"] for r in w["reasons"]} == {
        "buyer.mobile:phone.invalid"
    }
    assert [r["row"] for r in job["rejections"]] == [6]
    assert any("2 rows accepted with a field dropped" in note for note in job["notes"])

    table = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, [*options_of(system), "import", "orders", str(orders_file(unique("warn")))]
    )
    assert table.exit_code == 0, table.output
    assert "warned" in table.output and "phone.invalid" in table.output
