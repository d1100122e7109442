"""``make demo`` (``python -m crmctl.demo``) against the real processes, with a small shop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crmctl.demo.run import main
from crmctl.demo.shop import generate
from devtools.broker import EmbeddedBroker
from tests.conftest import ADMIN_KEY
from tests.e2e.system import RunningSystem, running_system

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture
def system(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[RunningSystem]:
    with running_system(broker, tmp_path) as running:
        running.wait_ready(90)
        yield running


def test_the_demo_streams_a_shop_in_and_reports_on_it(
    system: RunningSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for service, port in system.ports.items():
        monkeypatch.setenv(f"{service.upper()}_PORT", str(port))
    monkeypatch.setenv("CRM_API_KEY", ADMIN_KEY)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", system.bootstrap_servers)
    monkeypatch.setenv("CRM_TOPIC_NAMESPACE", system.namespace)
    out = tmp_path / "charts"

    assert main(["--customers", "400", "--seed", "5", "--out", str(out)]) == 0

    for name in ("rfm", "lifecycle", "funnel", "quadrants", "regions"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    shop = generate(400, seed=5)
    lifecycle = system.get("segment", "/v1/reports/lifecycle").json()
    # every generated customer ordered; those of all three paths were scored
    assert sum(r["customers"] for r in lifecycle["rows"]) == len(
        {o["customer_id"] for o in shop.orders}
    )
    stats = system.get("ingest", "/v1/stats", params={"windows": "1h"}).json()
    by_source = stats["windows"]["1h"]["by_source"]
    assert all(by_source[path]["accepted"] > 0 for path in ("rest", "kafka", "import"))
    assert stats["windows"]["1h"]["rejected"] == 0
    campaigns = system.get("campaign", "/v1/campaigns").json()["items"]
    assert len(campaigns) == 1 and campaigns[0]["holdout_share"] == 0.2
    report = system.get("campaign", f"/v1/campaigns/{campaigns[0]['campaign_id']}/report").json()
    assert report["holdout"] > 0 and report["sent"] > 0
    assert report["treatment"]["converted"] > 0

    policy = system.get("segment", "/v1/scoring-policy").json()["policy"]
    assert policy["frequency"] == {"method": "fixed", "breakpoints": ["1", "2", "3", "5"]}
    grid = system.get("segment", "/v1/reports/rfm").json()
    by_f: dict[int, int] = {}
    for cell in grid["rows"][0]["grid"]:
        by_f[int(cell["f_score"])] = by_f.get(int(cell["f_score"]), 0) + int(cell["customers"])
    assert by_f.get(2, 0) > 0 and by_f.get(3, 0) > 0  # not tied away at F1

    orders_before = system.get("ingest", "/v1/stats", params={"windows": "1h"}).json()
    assert main(["--customers", "400", "--seed", "5", "--out", str(out)]) == 1  # refused
    orders_after = system.get("ingest", "/v1/stats", params={"windows": "1h"}).json()
    assert orders_after["windows"]["1h"]["accepted"] == orders_before["windows"]["1h"]["accepted"]
