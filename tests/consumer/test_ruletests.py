"""Rule-test files read one case at a time, and the JUnit report written as cases run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumer.errors import CaseFileError
from consumer.ruletests import Case, CaseResult, JUnitReport, iter_cases


def _cases(path: Path, *cases: dict[str, object]) -> Path:
    path.write_text(json.dumps({"cases": list(cases)}))
    return path


def test_iter_cases_reads_an_event_file_only_when_its_case_is_reached(tmp_path: Path) -> None:
    """No event file is opened until the iterator is advanced, and then only the next
    case's: files that appear (or change) later are read as they are then."""
    path = _cases(
        tmp_path / "cases.json",
        {"name": "a", "event": "a.json", "expect": []},
        {"name": "b", "event": "b.json", "expect": ["x"], "actions": ["log"]},
        {"name": "inline", "body": "[{}]", "expect": []},
        {"name": "c", "event": "c.json", "expect": []},
    )
    cases = iter_cases(path)  # no event file exists yet
    (tmp_path / "a.json").write_bytes(b"first")
    (tmp_path / "b.json").write_bytes(b"not yet")
    assert next(cases) == Case("a", f"{path}:a", b"first", ())
    (tmp_path / "b.json").write_bytes(b"second")
    assert next(cases) == Case("b", f"{path}:b", b"second", ("x",), ("log",))
    assert next(cases).body == b"[{}]"
    with pytest.raises(CaseFileError) as raised:
        next(cases)
    assert str(raised.value).startswith(
        f"{path}: cases[3].event: cannot read {tmp_path / 'c.json'}: "
    )


def test_iter_cases_checks_every_entry_before_the_first_case(tmp_path: Path) -> None:
    """A malformed entry anywhere in the file stops it before its first case is yielded."""
    path = _cases(
        tmp_path / "cases.json",
        {"name": "fine", "body": "[{}]", "expect": []},
        {"name": "fine too", "body": "[{}]", "expect": []},
        {"name": "bad", "body": "[{}]", "expect": "everything"},
    )
    with pytest.raises(CaseFileError, match=r"cases\[2\]\.expect: must be a list of names"):
        next(iter_cases(path))


def test_junit_report_leaves_the_target_alone_when_the_run_stops(tmp_path: Path) -> None:
    """Cases go to disk as they come, but the target is replaced only by finish: a run that
    stops early leaves the old report, and no file of its own, behind."""
    target = tmp_path / "junit.xml"
    target.write_text("old report")
    case = Case("c", "cases.toml:c", b"[{}]", ())
    with JUnitReport(target) as report:
        report.add(CaseResult(case, (), None))
        report.add(CaseResult(case, (), "expected ['x'], matched []"))
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["junit.xml"]
