"""Decode + match throughput against bare ``json.loads``, for tables of 1 to 1,000 rules.

The baseline is the standard library parsing the same bodies, measured in the same run,
so the ratios hold on any machine. The rule tables are routing tables of the shape teams
write: every rule names an event type and the team's experiment, model, drift monitor or
service (a ``StringIn``), plus a second condition (status, threshold, tag or subject); the
six shipped example rules come first. Events belong to ten teams, so each matches a few
rules whatever the size of the table.

Targets: decode+match with 100 rules at most 2x ``json.loads``; 1,000 rules at most 1.5x
the cost of 10.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rules import RuleSource, RuleTable, decode_body, load_table

EXAMPLES = Path(__file__).resolve().parents[1] / "consumer" / "examples"
PREFIX = "Microsoft.MachineLearningServices."
EVENTS = 4_000
REPEATS = 7

_KINDS: list[tuple[str, str, dict[str, Any]]] = [
    ("RunStatusChanged", "data.experimentName",
     {"operatorType": "StringIn", "key": "data.runStatus", "values": ["Failed"]}),
    ("RunCompleted", "data.experimentName",
     {"operatorType": "StringIn", "key": "data.runType", "values": ["azureml.PipelineRun"]}),
    ("ModelRegistered", "data.ModelName",
     {"operatorType": "StringIn", "key": "data.ModelTags.stage", "values": ["production"]}),
    ("DatasetDriftDetected", "data.DataDriftName",
     {"operatorType": "NumberGreaterThanOrEquals", "key": "data.DriftCoefficient", "value": 0.5}),
    ("ModelDeployed", "data.ServiceName",
     {"operatorType": "StringBeginsWith", "key": "subject", "values": ["endpoints/"]}),
]  # fmt: skip


def rule_table(count: int) -> RuleTable:
    """The shipped example rules followed by ``count`` team routing rules (``count`` in all)."""
    example = (EXAMPLES / "rules.toml").read_text(encoding="utf-8")
    generated = []
    for i in range(max(0, count - 6)):
        event_type, key, second = _KINDS[i % len(_KINDS)]
        team = {"operatorType": "StringIn", "key": key, "values": [f"team-{i // len(_KINDS)}"]}
        flt = {"includedEventTypes": [PREFIX + event_type], "advancedFilters": [team, second]}
        generated.append({"name": f"route-{i}", "filter": flt, "actions": [{"type": "log"}]})
    sources = [RuleSource("generated.json", json.dumps({"rules": generated}))]
    if count >= 6:
        sources.insert(0, RuleSource("rules.toml", example))
    table = load_table(sources).table
    return RuleTable(table.rules[:count])


def bodies() -> list[bytes]:
    """Realistic bodies: the example events, with experiment and model names of ten teams."""
    templates = [
        p.read_text(encoding="utf-8") for p in sorted((EXAMPLES / "events").glob("*.json"))
    ]
    out = []
    for i in range(EVENTS):
        text = templates[i % len(templates)]
        team = f"team-{i % 10}"
        for name in (
            "credit-risk-training",
            "credit-risk-xgb",
            "credit-risk-input-drift",
            "nightly-retrain",
            "automl-local-regression",
            "my-sklearn-service",
        ):
            text = text.replace(f'"{name}"', f'"{team}"')
        out.append(text.encode())
    return out


def best_of(work: Callable[[], object]) -> float:
    """The fastest of several runs, in seconds: the least disturbed by a noisy machine."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Print events/second and ratios for each table size."""
    data = bodies()
    tables = {n: rule_table(n) for n in (1, 10, 100, 1000)}

    def baseline() -> None:
        for body in data:
            json.loads(body)

    def run(table: RuleTable) -> Callable[[], None]:
        def work() -> None:
            for body in data:
                for event in decode_body(body):
                    table.match(event)

        return work

    stdlib = best_of(baseline)
    timings = {n: best_of(run(table)) for n, table in tables.items()}
    print(f"bodies: {len(data)}; json.loads: {len(data) / stdlib:,.0f} bodies/s")
    for n, seconds in timings.items():
        print(
            f"rules {n:>5}: {len(data) / seconds:>10,.0f} events/s  "
            f"{seconds / stdlib:.2f}x json.loads"
        )
    print(f"100 rules vs json.loads: {timings[100] / stdlib:.2f}x (target <= 2.0)")
    print(f"1000 rules vs 10 rules:  {timings[1000] / timings[10]:.2f}x (target <= 1.5)")


if __name__ == "__main__":
    main()
