"""Explanations: part by part, and never in disagreement with the match itself."""

from __future__ import annotations

from typing import Any

import pytest

from rules import compile_filter
from tests.support.factories import RUN_STATUS_CHANGED, make_event

FILTER: dict[str, Any] = {
    "includedEventTypes": [RUN_STATUS_CHANGED],
    "subjectBeginsWith": "experiments/",
    "advancedFilters": [
        {"operatorType": "StringIn", "key": "data.runStatus", "values": ["failed"]},
        {"operatorType": "NumberGreaterThan", "key": "data.score", "value": 3},
        {"operatorType": "IsNotNull", "key": "data.runTags"},
        {"operatorType": "StringContains", "key": "data.list", "values": ["a"]},
    ],
}


@pytest.mark.parametrize(
    "data",
    [
        {"runStatus": "Failed", "score": 4, "runTags": {}, "list": "abc"},
        {"runStatus": "Failed", "score": "4", "runTags": {}, "list": "abc"},
        {"runStatus": "Failed", "runTags": {}, "list": ["a"]},
        {"runStatus": "Completed", "score": 4},
    ],
)
def test_explanation_verdict_equals_match(data: dict[str, Any]) -> None:
    """The explanation's overall verdict is the filter's verdict."""
    flt = compile_filter(FILTER)
    event = make_event(data=data)
    assert flt.explain(event).matched == flt.matches(event)


def test_explanation_names_each_part_and_its_reason() -> None:
    """Each part is reported with what was compared and the rule that decided it."""
    event = make_event(data={"runStatus": "Failed", "score": "4", "runTags": {}, "list": ["a"]})
    checks = {c.part: c for c in compile_filter(FILTER).explain(event).checks}
    assert list(checks) == [
        "includedEventTypes",
        "subject",
        "advancedFilters[0]",
        "advancedFilters[1]",
        "advancedFilters[2]",
        "advancedFilters[3]",
    ]
    assert checks["advancedFilters[0]"].passed
    assert "compared as 'FAILED'" in checks["advancedFilters[0]"].detail
    assert not checks["advancedFilters[1]"].passed
    assert "not of number type" in checks["advancedFilters[1]"].detail
    assert checks["advancedFilters[2]"].passed
    assert not checks["advancedFilters[3]"].passed
    assert "without enableAdvancedFilteringOnArrays" in checks["advancedFilters[3]"].detail


def test_missing_key_explanation() -> None:
    """A missing key is reported as such, with the operator's missing-key outcome."""
    event = make_event(data={"runStatus": "Failed"})
    check = compile_filter(FILTER).explain(event).checks[3]
    assert not check.passed
    assert "missing or null" in check.detail
