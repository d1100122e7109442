"""Static checks of the monitoring profile: Prometheus scrapes what the services expose,
alerts and the provisioned Grafana dashboard query metrics the code really exports."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import services.campaign.gauges
import services.profile.erasure_acks
import services.segment.clv_metrics
import services.segment.gauges
import shared.business_metrics
import shared.metrics
from shared import manifest

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "crm.json"
APPS = manifest.NAMES
METRIC = re.compile(r"\bcrm_[a-z0-9_]+")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _yaml(ROOT / "docker-compose.yml")


def known_metrics() -> set[str]:
    """Every sample name the services can expose: the registry's technical metrics (with
    their _total / _bucket / _sum / _count samples) and the business gauge families."""
    names: set[str] = set()
    for family in REGISTRY.collect():  # unlabelled children have no samples yet: add the suffixes
        names.add(family.name)
        names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_sum", "_count"))
    for module in (services.segment.gauges, services.segment.clv_metrics, services.campaign.gauges,
                   services.profile.erasure_acks):  # fmt: skip
        names.update(METRIC.findall(Path(module.__file__).read_text(encoding="utf-8")))
    return names


def _exprs_of_dashboard(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_monitoring_services_are_a_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    for name in APPS:  # the CRM itself starts without the profile
        assert "profiles" not in services[name]
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    for name in ("prometheus", "grafana"):
        for mount in services[name]["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_scrapes_every_service_metrics_port(compose: dict[str, Any]) -> None:
    config = _yaml(MONITORING / "prometheus.yml")
    targets = {
        target
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    expected = set()
    for name in APPS:
        env = compose["services"][name]["environment"]
        assert env[f"{name.upper()}_METRICS_HOST"] == "0.0.0.0"
        expected.add(f"{name}:{env[f'{name.upper()}_METRICS_PORT']}")
    assert targets == expected
    # a target label named like a metric label would be renamed exported_<label>
    for group in itertools.chain.from_iterable(
        j["static_configs"] for j in config["scrape_configs"]
    ):
        assert not set(group.get("labels", {})) & {"service", "consumer", "topic", "status"}
    mounted = [m.split(":")[1] for m in compose["services"]["prometheus"]["volumes"]]
    assert all(rule in mounted for rule in config["rule_files"])


def test_alert_rules_query_exported_metrics() -> None:
    known = known_metrics()
    rules = [
        rule for group in _yaml(MONITORING / "alerts.yml")["groups"] for rule in group["rules"]
    ]
    assert len(rules) >= 5
    for rule in rules:
        assert rule["alert"] and rule["annotations"]["summary"]
        assert rule["labels"]["severity"] in {"page", "ticket"}
        unknown = set(METRIC.findall(rule["expr"])) - known
        assert not unknown, f"{rule['alert']} queries {unknown}"


def test_the_dashboard_is_valid_and_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "crm-overview" and dashboard["title"]
    datasource = _yaml(MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uid = datasource["datasources"][0]["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid and panel["targets"], panel["title"]
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    known = known_metrics()
    used = {name for expr in _exprs_of_dashboard(dashboard) for name in METRIC.findall(expr)}
    assert used and not used - known, f"unknown metrics: {used - known}"
    business = {"crm_customers_by_lifecycle_stage", "crm_customers_by_rfm_segment",
                "crm_segment_members", "crm_campaign_messages_sent", "crm_campaign_conversions"}  # fmt: skip
    assert business <= used
    clv = {"crm_segment_clv_fit_ok", "crm_segment_p_alive_mean", "crm_segment_predicted_clv_total"}
    assert clv <= used
    assert {"crm_consumer_lag", "crm_outbox_pending", "crm_http_requests_total"} <= used
    provider = _yaml(MONITORING / "grafana" / "provisioning" / "dashboards" / "crm.yml")
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_a_metric_unknown_to_the_code_would_be_caught() -> None:
    assert "crm_customers_by_lifecycle_stage" in known_metrics()
    assert "crm_http_request_seconds_bucket" in known_metrics()
    assert "crm_no_such_metric" not in known_metrics()
    assert shared.business_metrics.BUSINESS is not None
