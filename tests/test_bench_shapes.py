"""The tables and events of ``bench.decode_match``: the sizes asked for, and no rule that
its shape's events never exercise."""

from __future__ import annotations

import tomllib

import pytest

from bench.decode_match import EXAMPLES, SHAPES, bodies, rule_table
from rules import decode_body


@pytest.mark.parametrize("count", [1, 6, 10, 100])
def test_rule_table_has_exactly_the_rules_asked_for_the_examples_first(count: int) -> None:
    examples = [r["name"] for r in tomllib.loads((EXAMPLES / "rules.toml").read_text())["rules"]]
    names = [rule.name for rule in rule_table(count).rules]
    assert len(names) == count
    assert names[: len(examples)] == examples[:count]
    assert names[len(examples) :] == [f"route-{i}" for i in range(count - len(examples))]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_rule_of_a_100_rule_table_matches_some_event_of_its_shape(shape: str) -> None:
    table = rule_table(100, shape)
    matched: set[str] = set()
    for body in bodies(shape):
        for event in decode_body(body):
            matched.update(rule.name for rule in table.match(event))
    assert len(table) == 100
    assert [r.name for r in table.rules if r.name not in matched] == []


@pytest.mark.parametrize("shape", list(SHAPES))
def test_some_events_of_every_shape_match_no_rule(shape: str) -> None:
    """Misses too: a shape whose every event matches would not test the filters' conditions."""
    table = rule_table(100, shape)
    unmatched = [b for b in bodies(shape, 240) if not any(map(table.match, decode_body(b)))]
    assert unmatched
