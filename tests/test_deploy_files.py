"""deploy/: the alert rules pass promtool (check and unit tests); the Grafana dashboard is valid JSON whose queries
name only metrics this code exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry

from middleware import IdempotencyMetrics
from tests.conftest import need_tool

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC = re.compile(r"\b(idempotency_[a-z_]+)\b")


def exported_series() -> set[str]:
    registry = CollectorRegistry()
    metrics = IdempotencyMetrics(registry)
    metrics.count("processed", "POST", "/x")
    for histogram in (metrics.lock_held, metrics.replay_age, metrics.stored_bytes):
        histogram.observe(1)
    metrics.operation_duration["claim"].observe(0.001)
    metrics.store_errors.labels("claim", "TimeoutError").inc()
    return {sample.name for family in registry.collect() for sample in family.samples}


def queries_in(obj: object) -> list[str]:
    if isinstance(obj, dict):
        return [q for k, v in obj.items() for q in ([v] if k == "expr" and isinstance(v, str) else queries_in(v))]
    if isinstance(obj, list):
        return [q for item in obj for q in queries_in(item)]
    return []


def test_dashboard_queries_name_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exported = exported_series()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert queries_in(panel), f"panel {panel['title']!r} has no query"
    names = {name for query in queries_in(dashboard) for name in METRIC.findall(query)}
    assert names and names <= exported, names - exported
    for wanted in ("idempotency_requests_total", "idempotency_requests_in_flight", "idempotency_leases_lost_total"):
        assert wanted in names
    assert "idempotency_store_operation_duration_seconds_bucket" in names


def test_alert_rules_name_only_exported_metrics() -> None:
    text = (DEPLOY / "prometheus-alerts.yml").read_text()
    names = set(METRIC.findall(text))
    exported = exported_series()
    assert names and names <= exported, names - exported


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
    out = subprocess.run(
        [promtool(), "test", "rules", "prometheus-alerts.test.yml"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
