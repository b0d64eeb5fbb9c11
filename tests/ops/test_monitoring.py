"""k8s/monitoring: the alert rules cover the SLOs, and the alerts and the dashboard only query
metrics the code really exports, with labels those metrics really have (a renamed metric would
otherwise leave an alert that can never fire)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "k8s" / "monitoring"
PACKAGES = (
    "common",
    "auth_service",
    "score_service",
    "leaderboard_service",
    "stream_service",
    "edge",
)


def _metric_modules() -> tuple[str, ...]:
    """Every product module that may define metrics (its source mentions prometheus_client), so
    the registry holds them all; a new module needs no list kept by hand. __main__ modules start
    a service when imported, so they are left out (they define no metrics)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__main__.py" or "prometheus_client" not in path.read_text():
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return tuple(found)


MODULES = _metric_modules()
_SELECTOR = re.compile(r"\b(scoreboard_[a-z0-9_]+)(\{[^}]*\})?")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _exported() -> dict[str, set[str]]:
    """Sample name -> label names, for every scoreboard metric the code defines."""
    for module in MODULES:
        importlib.import_module(module)
    names: dict[str, set[str]] = {}
    for name, collector in REGISTRY._names_to_collectors.items():
        if name.startswith("scoreboard_"):
            names[name] = set(getattr(collector, "_labelnames", ()))
    return names


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _check(expr: str, exported: dict[str, set[str]]) -> list[str]:
    problems = []
    used: set[str] = set()
    for name, selector in _SELECTOR.findall(expr):
        if name not in exported:
            problems.append(f"unknown metric {name}")
            continue
        used |= exported[name] | {"le"}
        for label in _MATCHER.findall(selector or ""):
            if label not in exported[name]:
                problems.append(f"{name} has no label {label}")
    if not used and not problems:
        problems.append("queries no scoreboard metric")
    for grouping in _GROUPING.findall(expr):
        for label in (g.strip() for g in grouping.split(",")):
            if label and label not in used:
                problems.append(f"groups by {label}, which no metric here has")
    return problems


def test_alerts_cover_the_slos() -> None:
    rules = _alert_rules()
    by_slo: dict[str, list[dict[str, Any]]] = {}
    for rule in rules:
        assert rule["alert"].startswith("Scoreboard"), rule
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        by_slo.setdefault(rule["labels"]["slo"], []).append(rule)
    assert set(by_slo) == {"availability", "propagation", "lag"}
    exprs = " ".join(r["expr"] for r in rules)
    propagation = next(r for r in rules if r["alert"] == "ScoreboardPropagationSlow")
    assert "histogram_quantile(0.99" in propagation["expr"]
    assert re.search(r">\s*0\.1\s*$", propagation["expr"].strip())
    for metric in (
        "scoreboard_http_request_seconds_count",
        "scoreboard_stream_lag_seconds",
        "scoreboard_stream_lag_entries",
        "scoreboard_outbox_backlog",
        "scoreboard_outbox_oldest_seconds",
        "scoreboard_dead_letters_total",
        "scoreboard_dead_letter_entries",
    ):
        assert metric in exprs, f"no alert on {metric}"


def test_every_metric_module_is_imported() -> None:
    modules = set(MODULES)
    for known in ("common.telemetry", "score_service.group_commit", "stream_service.rank_hub"):
        assert known in modules, known
    assert not any(m.endswith("__main__") for m in modules)


def test_alerts_and_dashboard_query_only_real_metrics_and_labels() -> None:
    exported = _exported()
    problems = {
        expr: found
        for expr in [r["expr"] for r in _alert_rules()] + _dashboard_exprs()
        if (found := _check(expr, exported))
    }
    assert not problems, problems


def test_the_checker_catches_what_it_should() -> None:
    exported = _exported()
    assert _check("rate(scoreboard_actions_total[5m])", exported) == []
    assert _check("rate(scoreboard_action_total[5m])", exported) == [
        "unknown metric scoreboard_action_total"
    ]
    assert _check('scoreboard_actions_total{reason="x"}', exported) == [
        "scoreboard_actions_total has no label reason"
    ]
    assert _check("sum by (route) (scoreboard_actions_total)", exported) == [
        "groups by route, which no metric here has"
    ]


def test_the_dashboard_is_grafana_json_with_every_area() -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    assert dashboard["uid"] == "scoreboard" and dashboard["title"] == "Scoreboard"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
    text = " ".join(_dashboard_exprs())
    for metric in _exported():
        family = re.sub(r"_(bucket|count|sum|total|created)$", "", metric)
        if metric.endswith("_created"):
            continue
        assert family in text, f"the dashboard shows nothing of {family}"


def test_the_dashboard_panels_fit_the_grid_without_overlapping() -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["y"] >= 0 and pos["h"] > 0, panel["title"]
        if panel["type"] == "row":
            assert (pos["x"], pos["w"], pos["h"]) == (0, 24, 1), panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    recorded = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr{i}", "expr": expr}
                    for i, expr in enumerate(_dashboard_exprs())
                ],
            }
        ]
    }
    dashboard_rules = tmp_path / "dashboard-rules.yaml"
    dashboard_rules.write_text(yaml.safe_dump(recorded))
    for rules in (MONITORING / "alerts.yaml", dashboard_rules):
        subprocess.run(["promtool", "check", "rules", str(rules)], check=True, timeout=60)
