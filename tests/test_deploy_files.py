"""deploy/: the alert rules pass promtool (check and unit tests); the Grafana dashboard is valid JSON whose queries
name only metrics this code exports."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from middleware import IdempotencyMetrics
from tests.conftest import need_tool

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC = re.compile(r"\b(idempotency_[a-z_]+)\b")
ALERTS = {
    "IdempotencyStoreErrors",
    "IdempotencyLeasesLost",
    "IdempotencyConflictRatioHigh",
    "IdempotencyMismatchSpike",
    "IdempotencyStoreLatencyHigh",
}


def exported_series() -> set[str]:
    """Every sample name the real metrics expose once each of them has a value."""
    registry = CollectorRegistry()
    metrics = IdempotencyMetrics(registry)
    metrics.count("processed", "POST", "/x")  # requests_total has no children before the first request
    for histogram in (metrics.lock_held, metrics.replay_age, metrics.stored_bytes):
        histogram.add(1)
    metrics.operation_duration["claim"].add(0.001)
    metrics.store_errors.labels("claim", "TimeoutError").inc()
    metrics.leases_lost.inc()
    metrics.lease_renewals.inc()
    metrics.admin_actions.labels("evict", "ok").inc()
    metrics.in_flight.add(1)
    return {sample.name for family in registry.collect() for sample in family.samples}


def queries_in(obj: object) -> list[str]:
    if isinstance(obj, dict):
        return [q for k, v in obj.items() for q in ([v] if k == "expr" and isinstance(v, str) else queries_in(v))]
    if isinstance(obj, list):
        return [q for item in obj for q in queries_in(item)]
    return []


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return dashboard


def test_exported_series_cover_the_documented_metrics() -> None:
    exported = exported_series()
    for name in (
        "idempotency_requests_total",
        "idempotency_store_operation_duration_seconds_bucket",
        "idempotency_store_operation_duration_seconds_sum",
        "idempotency_store_operation_duration_seconds_count",
        "idempotency_store_errors_total",
        "idempotency_lock_held_seconds_bucket",
        "idempotency_replay_age_seconds_bucket",
        "idempotency_stored_response_bytes_bucket",
        "idempotency_leases_lost_total",
        "idempotency_lease_renewals_total",
        "idempotency_requests_in_flight",
        "idempotency_build_info",
        "idempotency_admin_actions_total",
    ):
        assert name in exported


def test_dashboard_queries_name_only_exported_metrics() -> None:
    dashboard = load_dashboard()
    exported = exported_series()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert queries_in(panel.get("targets", [])), f"panel {panel['title']!r} has no query"
    names = {name for query in queries_in(dashboard) for name in METRIC.findall(query)}
    assert names and names <= exported, names - exported
    for wanted in (
        "idempotency_requests_total",
        "idempotency_requests_in_flight",
        "idempotency_leases_lost_total",
        "idempotency_store_errors_total",
        "idempotency_store_operation_duration_seconds_bucket",
        "idempotency_replay_age_seconds_bucket",
        "idempotency_stored_response_bytes_bucket",
        "idempotency_admin_actions_total",
    ):
        assert wanted in names


def test_dashboard_variables_datasources_and_layout() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["route"]["definition"] == "label_values(idempotency_requests_total, route)"
    assert variables["route"]["datasource"]["uid"] == "${datasource}"

    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            if "idempotency_requests_total" in target["expr"]:
                selectors = re.findall(r"idempotency_requests_total\{([^}]*)\}", target["expr"])
                assert selectors and all('route=~"$route"' in s for s in selectors), target["expr"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    for a, b in itertools.combinations(panels, 2):
        ga, gb = a["gridPos"], b["gridPos"]
        apart = (
            ga["x"] + ga["w"] <= gb["x"]
            or gb["x"] + gb["w"] <= ga["x"]
            or ga["y"] + ga["h"] <= gb["y"]
            or gb["y"] + gb["h"] <= ga["y"]
        )
        assert apart, f"panels {a['title']!r} and {b['title']!r} overlap"


def test_alert_rules_name_only_exported_metrics() -> None:
    text = (DEPLOY / "prometheus-alerts.yml").read_text()
    names = set(METRIC.findall(text))
    exported = exported_series()
    assert names and names <= exported, names - exported


def test_alert_rules_are_complete() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    groups = {group["name"]: group["rules"] for group in rules["groups"]}
    alerts = {rule["alert"]: rule for rule in groups["idemscope"]}
    assert set(alerts) >= ALERTS
    exported = exported_series()
    for group in groups.values():
        for rule in group:
            names = set(METRIC.findall(rule["expr"]))
            assert names and names <= exported, (rule.get("alert") or rule.get("record"), names - exported)
    for name, alert in alerts.items():
        assert "for" in alert, name
        assert alert["labels"]["severity"] in ("critical", "warning", "info"), name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        need_tool(FileNotFoundError("promtool is not installed (Debian/Ubuntu: apt-get install prometheus)"))
    assert path is not None
    return path


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(DEPLOY / "prometheus-alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_the_alerts() -> None:
    """Each alert fires on its cause and stays quiet otherwise (deploy/prometheus-alerts.test.yml)."""
    tests = (DEPLOY / "prometheus-alerts.test.yml").read_text()
    assert set(re.findall(r"alertname: (\w+)", tests)) >= ALERTS
    out = subprocess.run(
        [promtool(), "test", "rules", "prometheus-alerts.test.yml"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
