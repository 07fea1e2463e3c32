"""The monitoring component fits the worker: every series its alerts and its Grafana dashboard
read is one the worker exports, and the dashboard reaches Grafana in a ConfigMap."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.config import load_config
from consumer.rulefiles import load_rule_files
from consumer.worker.metrics import Metrics

from .manifests import BASE, DEPLOY, Object, one

MONITORING = DEPLOY / "components" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"

# The sample names each metric type exposes besides (or instead of) the family's name.
_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def _exported() -> set[str]:
    """Every series name a worker running deploy/base's rules exports, read from its
    registry's exposition text: the samples there now, and for families without a sample yet
    (a partition's, before one is claimed) the names their type gives samples."""
    config = load_config(BASE / "config.toml", environ={})
    metrics = Metrics(clock=time.time)
    metrics.rules_loaded(load_rule_files(config.rules.files, secrets=config.secrets).table)
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics.render().decode("utf-8")):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",)))
    return names


# PromQL, taken apart just enough to find the series an expression selects: strings, label
# matchers, ranges and grouping labels go; what is left that names no function or keyword is a
# series. Grafana's variables ($job, $__rate_interval) sit inside what goes.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACKETS = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAME = re.compile(r"(?<![\w:.$])[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "by", "without",
             "on", "ignoring", "group_left", "group_right"}  # fmt: skip
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<query>.*),\s*\w+\s*\)\s*$", re.DOTALL)


def _series_in(expression: str) -> set[str]:
    """The series names a PromQL expression (or a Grafana ``label_values`` query) selects."""
    values = _LABEL_VALUES.match(expression)
    if values is not None:
        expression = values["query"]
    stripped = _GROUPING.sub(" ", _BRACKETS.sub(" ", _STRINGS.sub('""', expression)))
    return {name for name in _NAME.findall(stripped) if name.lower() not in _KEYWORDS}


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: its panels' and its variables' queries."""
    dashboard = _dashboard()
    queries = [
        target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def _alert_expressions(objects: list[Object]) -> list[str]:
    rule = one(objects, "PrometheusRule")
    return [entry["expr"] for group in rule["spec"]["groups"] for entry in group["rules"]]


def test_series_are_found_in_promql() -> None:
    """What the checks below rely on: names in selectors, under functions and groupings, not
    label names, strings, durations, keywords or Grafana variables."""
    expression = (
        'histogram_quantile(0.95, sum by (le, type) (rate(a_bucket{job=~"$job", x="y z"}'
        "[$__rate_interval]))) / on (type) group_left b:c offset 5m > bool 1e3 unless d"
    )
    assert _series_in(expression) == {"a_bucket", "b:c", "d"}
    assert _series_in('label_values(e_info{namespace="$namespace"}, job)') == {"e_info"}


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_series_read_is_one_the_worker_exports(source: str, example: list[Object]) -> None:
    """Each alert and dashboard expression reads at least one series, and only series the
    worker exports: a renamed metric fails here, not silently on a cluster."""
    expressions = _alert_expressions(example) if source == "alerts" else _dashboard_queries()
    exported = _exported()
    read: set[str] = set()
    for expression in expressions:
        names = _series_in(expression)
        assert names, f"no series in {expression!r}"
        assert names <= exported, f"{sorted(names - exported)} in {expression!r}"
        read |= names
    if source == "alerts":
        assert {"mlevents_partition_lag", "mlevents_checkpoint_age_seconds"} <= read
        assert "mlevents_dead_letters_total" in read
    else:
        assert {
            "mlevents_partition_lag",  # lag
            "mlevents_events_received_total",  # throughput
            "mlevents_action_latency_seconds_bucket",  # latency
            "mlevents_action_duration_seconds_bucket",
            "mlevents_actions_total",  # outcomes
            "mlevents_dead_letters_total",
            "mlevents_actions_uncertain_total",
        } <= read


def test_dashboard_panels_fit_the_grid_and_query_the_chosen_data_source() -> None:
    """Panel ids are unique, panels lie within Grafana's 24 columns, and every query goes to
    the dashboard's data source variable (no uid of someone's Grafana)."""
    dashboard = _dashboard()
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"


def test_the_dashboard_ships_as_a_config_map_for_grafana(example: list[Object]) -> None:
    """The monitoring component renders one ConfigMap for Grafana's dashboard sidecar, holding
    the dashboard file as it is."""
    found = [
        item
        for item in example
        if item["kind"] == "ConfigMap"
        and item["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    assert len(found) == 1
    (document,) = found[0]["data"].values()
    assert json.loads(document) == _dashboard()
