"""The offline commands: match, explain, test and lint, as a user runs them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import tracemalloc
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import uvloop

from consumer.commands.main import main
from consumer.commands.progress import Progress
from consumer.commands.rules import EXAMPLES
from consumer.commands.run import run_fast
from tests.support import ROOT
from tests.support.capture import write_capture
from tests.support.factories import event_json
from tests.support.terminal import Terminal

RULES = """\
[[rules]]
name = "failed"
[rules.filter]
advancedFilters = [{ operatorType = "StringIn", key = "data.runStatus", values = ["failed"] }]
[[rules.actions]]
type = "log"

[[rules]]
name = "everything"
[[rules.actions]]
type = "log"
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


def _body(**overrides: object) -> str:
    return json.dumps([event_json(**overrides)])


def test_match_jsonl_prints_one_exact_line_per_event(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """jsonl output is exactly id, type, subject and matched rule names in table order."""
    events = tmp_path / "events.jsonl"
    ok = json.dumps(event_json(id="b", data={"runStatus": "Completed"}))
    events.write_text(_body(id="a") + "\n\n" + ok + "\n")
    assert main(["match", "--rules", str(rules_file), "--format", "jsonl", str(events)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {
            "id": "a",
            "type": "Microsoft.MachineLearningServices.RunStatusChanged",
            "subject": "experiments/e1/runs/r1",
            "matched": ["failed", "everything"],
        },
        {
            "id": "b",
            "type": "Microsoft.MachineLearningServices.RunStatusChanged",
            "subject": "experiments/e1/runs/r1",
            "matched": ["everything"],
        },
    ]


def test_match_reports_bad_lines_with_file_and_line_and_goes_on(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad line is reported as file:line: reason on stderr; the rest still matches; exit 1."""
    events = tmp_path / "events.jsonl"
    events.write_text("not json\n" + _body(id="ok") + "\n" + '[{"id": "x"}]\n')
    code = main(["match", "--rules", str(rules_file), "--format", "jsonl", str(events)])
    captured = capsys.readouterr()
    assert code == 1
    assert [json.loads(line)["id"] for line in captured.out.splitlines()] == ["ok"]
    errors = captured.err.splitlines()
    assert errors[0].startswith(f"{events}:1: body is not JSON")
    assert errors[1] == f"{events}:3: event [0] has no 'eventType' (Event Grid schema)"


def test_match_reports_a_bad_json_file_with_its_line(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .json file is one body: broken JSON is reported at the line where it breaks, a bad
    event at line 1 where the body starts, each as file:line: reason."""
    broken = tmp_path / "broken.json"
    broken.write_text('[{\n  "id": "a",\n  "eventType": oops\n}]\n')
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"id": "x"}], indent=2))
    assert main(["match", "--rules", str(rules_file), str(broken), str(wrong)]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].startswith(f"{broken}:3: body is not JSON: ")
    assert errors[1] == f"{wrong}:1: event [0] has no 'eventType' (Event Grid schema)"


def test_match_reads_standard_input_and_missing_files(
    rules_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-` reads JSON Lines from stdin; a missing file is reported and gives exit 1."""
    stdin = io.TextIOWrapper(io.BytesIO((_body(id="s") + "\n").encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    code = main(["match", "--rules", str(rules_file), "--format", "jsonl", "-", "nope.json"])
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out)["id"] == "s"
    assert "nope.json: cannot read" in captured.err


@pytest.mark.parametrize(
    "command",
    [["match", "--rules", "RULES"], ["explain", "--rule", "failed", "--rules", "RULES"]],
    ids=["match", "explain"],
)
def test_a_missing_event_file_after_the_rules_is_named_as_missing(
    rules_file: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--rules rules.toml missing.json``: the missing file is named and said to be missing
    (not taken for a rules file, leaving "match needs EVENTS")."""
    argv = [str(rules_file) if arg == "RULES" else arg for arg in command]
    assert main([*argv, "missing.json"]) == 1
    assert capsys.readouterr().err == "missing.json: cannot read: No such file or directory\n"


def test_match_reads_event_hubs_capture_avro(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each Capture record's Body is one body; an empty Capture file has no events."""
    records = [
        {
            "SequenceNumber": n,
            "Offset": str(n * 100),
            "EnqueuedTimeUtc": "5/14/2024 9:21:38 AM",
            "SystemProperties": {},
            "Properties": {"aeg-event-type": "Notification"},
            "Body": _body(id=f"cap-{n}").encode(),
        }
        for n in range(3)
    ]
    capture = write_capture(tmp_path / "17.avro", records)
    empty = tmp_path / "18.avro"
    empty.write_bytes(b"")
    code = main(
        ["match", "--rules", str(rules_file), "--format", "jsonl", str(capture), str(empty)]
    )
    assert code == 0
    ids = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert ids == ["cap-0", "cap-1", "cap-2"]


def test_match_text_format(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Text output names the event and its rules, or says no rule matched."""
    event = tmp_path / "e.json"
    event.write_text(json.dumps(event_json(eventType="Other", data={})))
    assert main(["match", "--rules", str(rules_file), str(event)]) == 0
    assert capsys.readouterr().out.strip().endswith("-> everything")


def test_explain_shows_each_check(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """explain prints the verdict and one line per part of the filter."""
    event = tmp_path / "e.json"
    event.write_text(_body(data={"runStatus": 3}))
    assert main(["explain", "--rules", str(rules_file), "--rule", "failed", str(event)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("rule 'failed' DOES NOT MATCH event id-1")
    assert out[1].startswith("  pass  includedEventTypes")
    assert out[2].startswith("  FAIL  advancedFilters[0]: data.runStatus StringIn ['failed']")
    assert "not of string type" in out[2]


def test_explain_unknown_rule_is_a_usage_error(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Naming a rule that does not exist exits 2 and lists the rules."""
    event = tmp_path / "e.json"
    event.write_text(_body())
    assert main(["explain", "--rules", str(rules_file), "--rule", "nope", str(event)]) == 2
    assert "the rules are: failed, everything" in capsys.readouterr().err


def test_embedded_examples_pass_and_cover_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    """`mlevents test` with no arguments runs the shipped examples, all green and covered."""
    assert main(["test"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert out.splitlines()[-1].endswith("0 failed; 6/6 rules covered")


def test_test_failures_exit_1_and_write_junit(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failing case exits 1, names the difference and lands in the JUnit report."""
    cases = tmp_path / "cases.toml"
    cases.write_text(
        "[[cases]]\n"
        'name = "good"\n'
        f"body = '''{_body()}'''\n"
        'expect = ["failed", "everything"]\n'
        'actions = ["log", "log"]\n'
        "[[cases]]\n"
        'name = "bad"\n'
        f"body = '''{_body()}'''\n"
        'expect = ["everything"]\n'
    )
    report = tmp_path / "junit.xml"
    code = main(["test", "--rules", str(rules_file), str(cases), "--junit-xml", str(report)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  bad: expected ['everything'], matched ['failed', 'everything']" in out
    suite = ET.parse(report).getroot()
    assert suite.get("tests") == "2"
    assert suite.get("failures") == "1"
    failed = [tc.get("name") for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert failed == ["bad"]


def test_test_reports_uncovered_rules(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rules that no case matched are listed as uncovered."""
    cases = tmp_path / "cases.json"
    body = _body(data={"runStatus": "Completed"})
    cases.write_text(json.dumps({"cases": [{"name": "c", "body": body, "expect": ["everything"]}]}))
    assert main(["test", "--rules", str(rules_file), str(cases)]) == 0
    out = capsys.readouterr().out
    assert "rules no case matched: failed" in out
    assert out.splitlines()[-1].endswith("1/2 rules covered")


def test_bad_case_file_is_a_usage_error(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A case with neither event nor body exits 2 naming the file and case."""
    cases = tmp_path / "cases.toml"
    cases.write_text('[[cases]]\nname = "x"\nexpect = []\n')
    assert main(["test", "--rules", str(rules_file), str(cases)]) == 2
    assert f"{cases}: cases[0]: give exactly one of 'event'" in capsys.readouterr().err


def _cases_file(path: Path, cases: Sequence[Mapping[str, object]]) -> Path:
    path.write_text(json.dumps({"cases": list(cases)}))
    return path


def test_test_prints_each_case_before_reading_the_next(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cases run as they are read: when the third case's event file cannot be read, the
    first two results are out already and the error names the file and the case (exit 2)."""
    (tmp_path / "failed.json").write_text(_body())
    cases = _cases_file(
        tmp_path / "cases.json",
        [
            {"name": "first", "event": "failed.json", "expect": ["failed", "everything"]},
            {"name": "second", "event": "failed.json", "expect": []},
            {"name": "third", "event": "missing.json", "expect": []},
            {"name": "fourth", "event": "failed.json", "expect": []},
        ],
    )
    assert main(["test", "--rules", str(rules_file), str(cases)]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "pass  first",
        "FAIL  second: expected [], matched ['failed', 'everything']",
    ]
    assert captured.err == (
        f"mlevents: {cases}: cases[2].event: cannot read {tmp_path / 'missing.json'}: "
        "No such file or directory\n"
    )


def test_a_malformed_case_stops_its_file_before_any_of_its_cases_runs(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entries are checked when their file is opened (no event file read), so a typo in the
    last case is found before the first runs."""
    ok = {"name": "ok", "body": _body(), "expect": ["failed", "everything"]}
    cases = _cases_file(tmp_path / "cases.json", [ok, ok, {"name": "typo", "expec": []}])
    assert main(["test", "--rules", str(rules_file), str(cases)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{cases}: cases[2]: unknown key(s) expec; expected name" in captured.err


def test_test_over_twenty_thousand_generated_cases(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line per case in file order, then coverage and the counts, over a large file of
    cases that share their event files."""
    (tmp_path / "completed.json").write_text(_body(data={"runStatus": "Completed"}))
    more = tmp_path / "more.toml"
    more.write_text('[[rules]]\nname = "never"\n[rules.filter]\nincludedEventTypes = ["No"]\n')
    generated: list[dict[str, object]] = [
        {"name": f"case {n}", "event": "completed.json", "expect": ["everything"]}
        for n in range(20_000)
    ]
    generated[7] = {"name": "case 7", "event": "completed.json", "expect": []}
    generated[19_999] = {"name": "case 19999", "body": "not json", "expect": []}
    cases = _cases_file(tmp_path / "cases.json", generated)
    assert main(["test", "--rules", str(rules_file), str(more), str(cases)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 20_002
    assert lines[:9] == [
        *(f"pass  case {n}" for n in range(7)),
        "FAIL  case 7: expected [], matched ['everything']",
        "pass  case 8",
    ]
    assert lines[19_999].startswith("FAIL  case 19999: event does not decode: body is not JSON")
    assert lines[-2:] == [
        "rules no case matched: failed, never",
        "20000 cases, 19998 passed, 2 failed; 1/3 rules covered",
    ]


def test_test_junit_xml_is_the_same_document(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report written as cases run is, to the byte, the document of one written at the
    end; it replaces an older one and leaves no other file beside it."""
    more = tmp_path / "more.toml"
    more.write_text('[[rules]]\nname = "never"\n[rules.filter]\nincludedEventTypes = ["No"]\n')
    cases = _cases_file(
        tmp_path / "cases.json",
        [
            {"name": "good", "body": _body(), "expect": ["failed", "everything"]},
            {"name": 'bad <&"> ü', "body": _body(), "expect": ["everything"]},
            {"name": "does not decode", "body": "[{", "expect": []},
        ],
    )
    report = tmp_path / "junit.xml"
    report.write_text("an older report")
    rules = ["--rules", str(rules_file), str(more)]
    assert main(["test", *rules, str(cases), "--junit-xml", str(report)]) == 1
    assert report.read_bytes().decode() == (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        '<testsuite name="mlevents rules" tests="3" failures="2" errors="0" skipped="0">'
        '<properties><property name="uncovered_rules" value="never" /></properties>'
        '<testcase classname="rules" name="good" />'
        '<testcase classname="rules" name="bad &lt;&amp;&quot;&gt; ü">'
        "<failure message=\"expected ['everything'], matched ['failed', 'everything']\">"
        f"{cases}:bad &lt;&amp;\"&gt; ü: expected ['everything'], matched ['failed', 'everything']"
        "</failure></testcase>"
        '<testcase classname="rules" name="does not decode">'
        '<failure message="event does not decode: body is not JSON: Input data was truncated">'
        f"{cases}:does not decode: event does not decode: body is not JSON: "
        "Input data was truncated</failure></testcase></testsuite>"
    )
    empty = _cases_file(tmp_path / "empty.json", [])
    assert main(["test", *rules, str(empty), "--junit-xml", str(report)]) == 0
    assert report.read_text() == (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        '<testsuite name="mlevents rules" tests="0" failures="0" errors="0" skipped="0">'
        '<properties><property name="uncovered_rules" value="failed,everything,never" />'
        "</properties></testsuite>"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cases.json",
        "empty.json",
        "junit.xml",
        "more.toml",
        "rules.toml",
    ]
    capsys.readouterr()


def test_test_junit_xml_that_cannot_be_written_stops_before_any_case(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report path in a folder that does not exist is a usage error found at the start."""
    cases = _cases_file(tmp_path / "cases.json", [{"body": _body(), "expect": []}])
    report = tmp_path / "missing" / "junit.xml"
    code = main(["test", "--rules", str(rules_file), str(cases), "--junit-xml", str(report)])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"mlevents: {report}: cannot write the JUnit report: No such file or directory\n"
    )


def test_test_memory_does_not_grow_with_the_cases(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2,000 cases of a 50 kB event (200 MB read in all, with the JUnit report) peak at
    a few megabytes: each body is let go once its case has run, and so is its result."""
    padding = "x" * 50_000
    (tmp_path / "big.json").write_text(_body(data={"runStatus": "Failed", "padding": padding}))
    cases = _cases_file(
        tmp_path / "cases.json",
        [
            {"name": f"c{n}", "event": "big.json", "expect": ["failed", "everything"]}
            for n in range(2_000)
        ],
    )
    report = tmp_path / "junit.xml"
    tracemalloc.start()
    try:
        code = main(["test", "--rules", str(rules_file), str(cases), "--junit-xml", str(report)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "2000 cases, 2000 passed, 0 failed; 2/2 rules covered"
    )
    assert peak < 10_000_000


def test_test_shows_progress_in_cases_and_failures(
    rules_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal the progress line of a long run counts cases and failed ones."""
    cases = _cases_file(
        tmp_path / "cases.json",
        [{"name": "wrong", "body": _body(), "expect": []}]
        + [{"body": _body(), "expect": ["failed", "everything"]}] * 1_000,
    )
    monkeypatch.setattr(Progress, "AFTER_S", 0.0)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["test", "--rules", str(rules_file), str(cases)]) == 1
    assert re.fullmatch(r"\r512 cases, [\d,]+/s, 1 failed\n", terminal.getvalue())
    assert capsys.readouterr().out.splitlines()[-1].startswith("1001 cases, 1000 passed")


def test_lint_prints_warnings_and_fails_on_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lint exits 0 with warnings for a valid table and 2 with every error for a bad one."""
    good = tmp_path / "good.toml"
    good.write_text('[[rules]]\nname = "quiet"\n')
    assert main(["lint", "--rules", str(good)]) == 0
    assert "warning: " in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nname = "x"\nfilter = { isSubjectCaseSensitive = "yes" }\n')
    assert main(["lint", "--rules", str(bad)]) == 2
    assert "filter.isSubjectCaseSensitive: must be a boolean" in capsys.readouterr().err


def test_lint_with_env_checks_the_secrets_the_rules_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lint --env`` fails naming an unset ``secret_env``, or one that is not a signing
    secret (every signed request would be dead-lettered), never showing the value; plain
    lint does not look."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "hook"\n[[rules.actions]]\ntype = "webhook"\n'
        'url = "https://example.com/hook"\nsecret_env = "MLEVENTS_TEST_HOOK_SECRET"\n'
    )
    monkeypatch.delenv("MLEVENTS_TEST_HOOK_SECRET", raising=False)
    assert main(["lint", "--rules", str(rules)]) == 0
    capsys.readouterr()
    assert main(["lint", "--env", "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert "actions[0].secret_env: environment variable MLEVENTS_TEST_HOOK_SECRET is not set" in err
    monkeypatch.setenv("MLEVENTS_TEST_HOOK_SECRET", "s3cret-value")
    assert main(["lint", "--env", "--rules", str(rules)]) == 2
    out, err = capsys.readouterr()
    assert (
        f"{rules}:2: rule 'hook': actions[0].secret_env: environment variable "
        "MLEVENTS_TEST_HOOK_SECRET does not hold a Standard Webhooks signing secret" in err
    )
    assert "s3cret-value" not in out + err
    monkeypatch.setenv("MLEVENTS_TEST_HOOK_SECRET", "whsec_czNjcmV0LXZhbHVl")
    assert main(["lint", "--env", "--rules", str(rules)]) == 0
    assert "czNjcmV0LXZhbHVl" not in "".join(capsys.readouterr())


def test_lint_with_env_and_config_checks_the_host_of_a_url_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``url_env`` URL goes to an allowed host, as a written ``url`` does; the problem
    names the host and the variable, never the URL."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "hook"\n[[rules.actions]]\ntype = "webhook"\n'
        'url_env = "MLEVENTS_TEST_HOOK_URL"\n'
    )
    config = tmp_path / "config.toml"
    config.write_text(
        '[rules]\nfiles = ["rules.toml"]\n[webhook]\nallowed_hosts = ["*.example.com"]\n'
    )
    monkeypatch.setenv("MLEVENTS_TEST_HOOK_URL", "https://hooks.example.net/x?sig=URLKEY")
    assert main(["lint", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["lint", "--env", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert (
        "rule 'hook': actions[0].url_env: host hooks.example.net (in MLEVENTS_TEST_HOOK_URL) "
        "is not in [webhook] allowed_hosts" in err
    )
    assert "URLKEY" not in err
    monkeypatch.setenv("MLEVENTS_TEST_HOOK_URL", "https://hooks.example.com/x?sig=URLKEY")
    assert main(["lint", "--env", "--config", str(config)]) == 0
    assert "URLKEY" not in "".join(capsys.readouterr())


def test_lint_with_config_checks_webhook_hosts_against_allowed_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A webhook to a host that ``[webhook] allowed_hosts`` does not list fails lint, as it
    fails the worker's start."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "hook"\n[[rules.actions]]\ntype = "webhook"\n'
        'url = "https://hooks.example.net/x?code=KEY"\n'
    )
    config = tmp_path / "config.toml"
    config.write_text(
        '[rules]\nfiles = ["rules.toml"]\n[webhook]\nallowed_hosts = ["*.example.com"]\n'
    )
    assert main(["lint", "--rules", str(rules)]) == 0
    capsys.readouterr()
    assert main(["lint", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "rule 'hook': actions[0].url: host hooks.example.net is not in [webhook]" in err
    assert "KEY" not in err


def test_lint_reports_every_problem_at_once_references_included(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown action type does not stop lint: the job spec of the same rule, the secret
    of another and a duplicate name are reported with it, each with file:line, rule and key."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "a"\n[[rules.actions]]\ntype = "smoke-signal"\n'
        '[[rules.actions]]\ntype = "aml_job"\nsubscription_id = "s"\nresource_group = "g"\n'
        'workspace = "w"\njob = "missing.yaml"\n\n'
        '[[rules]]\nname = "hook"\n[[rules.actions]]\ntype = "webhook"\n'
        'url = "https://example.com/hook"\nsecret_env = "MLEVENTS_TEST_HOOK_SECRET"\n\n'
        '[[rules]]\nname = "a"\n'
    )
    monkeypatch.delenv("MLEVENTS_TEST_HOOK_SECRET", raising=False)
    assert main(["lint", "--env", "--rules", str(rules)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "mlevents: 4 problem(s) in the rule table:"
    assert lines[1].startswith(f"  {rules}:2: rule 'a': actions[0]: unknown action type")
    assert (
        lines[2] == f"  {rules}:20: rule 'a': name: duplicate rule name, first defined at {rules}:2"
    )
    assert lines[3].startswith(f"  {rules}:2: rule 'a': actions[1].job: job spec ")
    assert lines[4] == (
        f"  {rules}:13: rule 'hook': actions[0].secret_env: "
        "environment variable MLEVENTS_TEST_HOOK_SECRET is not set"
    )


def test_config_supplies_rules_and_tests(capsys: pytest.CaptureFixture[str]) -> None:
    """The repository's config.toml is a working example for test and lint."""
    config = str(ROOT / "config.toml")
    assert main(["test", "--config", config]) == 0
    assert main(["lint", "--config", config]) == 0
    assert "6 rules, 0 warning(s)" in capsys.readouterr().out


def test_examples_are_shipped_inside_the_package() -> None:
    """The embedded default lives inside the consumer package, so the wheel carries it."""
    assert (EXAMPLES / "rules.toml").is_file()
    assert (EXAMPLES / "rules.test.toml").is_file()


def test_several_rule_files_then_events_without_a_separator(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--rules a.toml b.json events.json` takes the rule files by content, then the events."""
    more = tmp_path / "more.json"
    more.write_text(json.dumps({"rules": [{"name": "json-rule"}]}))
    event = tmp_path / "e.json"
    event.write_text(_body())
    code = main(["match", "--rules", str(rules_file), str(more), str(event), "--format", "jsonl"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["matched"] == ["failed", "everything", "json-rule"]


def test_event_files_after_the_rules_are_not_read_to_tell_them_apart(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSON Lines file after ``--rules`` is events by its name: a bad line in it is one bad
    record, not an unreadable rules file (it used to be read whole, and parsed, first)."""
    events = tmp_path / "day.jsonl"
    events.write_bytes(b"\xff\xfe not UTF-8\n" + _body().encode() + b"\n")
    code = main(["match", "--rules", str(rules_file), str(events), "--format", "jsonl"])
    captured = capsys.readouterr()
    assert code == 1  # one bad record
    assert json.loads(captured.out)["matched"] == ["failed", "everything"]
    assert f"{events}:1: body is not UTF-8" in captured.err


def test_a_toml_cases_file_after_the_rules_is_told_apart_by_its_first_table(
    rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = tmp_path / "cases.toml"
    body = json.dumps(_body())  # a TOML basic string is a JSON string
    cases.write_text(f"[[cases]]\nname = 'c'\nbody = {body}\nexpect = ['failed', 'everything']\n")
    assert main(["test", "--rules", str(rules_file), str(cases)]) == 0
    assert "1 cases, 1 passed, 0 failed" in capsys.readouterr().out


def test_the_worker_runs_on_uvloop_where_it_is_installed() -> None:
    """``run`` and ``dev`` go through ``run_fast``: uvloop's loop, the coroutine's exit code."""
    seen: list[type[asyncio.AbstractEventLoop]] = []

    async def worker() -> int:
        seen.append(type(asyncio.get_running_loop()))
        return 7

    assert run_fast(worker()) == 7
    assert seen == [uvloop.Loop]


def _mlevents(*args: str, stdin: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "consumer", *args],
        cwd=ROOT,
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_match_streams_each_record_before_reading_the_next(rules_file: Path) -> None:
    """From a pipe that stays open, a record's line comes out before the next record is
    written: nothing waits for the whole input (so memory does not grow with it)."""
    process = _mlevents("match", "--rules", str(rules_file), "--format", "jsonl", "-")
    assert process.stdin is not None and process.stdout is not None
    try:
        for index in range(3):
            process.stdin.write((_body(id=f"e{index}") + "\n").encode())
            process.stdin.flush()
            line = json.loads(process.stdout.readline())
            assert line["id"] == f"e{index}"
        process.stdin.close()
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_match_into_a_reader_that_stops_early_ends_quietly(
    rules_file: Path, tmp_path: Path
) -> None:
    """``mlevents match ... | head -1``: no BrokenPipeError traceback, exit 0."""
    events = tmp_path / "many.jsonl"
    events.write_text("".join(_body(id=f"e{i}") + "\n" for i in range(20_000)))
    process = _mlevents("match", "--rules", str(rules_file), str(events), stdin=None)
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # the reader goes away, as head does after its lines
    assert process.wait(60) == 0
    assert first.startswith(b"e0  ")
    assert process.stderr.read() == b""
    process.stderr.close()


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["match", "--help"],
        ["lint", "--rules", "RULES"],
        ["explain", "--rules", "RULES", "--rule", "failed", "EVENTS"],
        ["match", "--rules", "RULES", "EVENTS"],
        ["test", "--rules", "RULES", "CASES"],
        ["deadletter", "--config", "CONFIG", "list"],
    ],
    ids=lambda command: " ".join(command),
)
def test_output_into_a_reader_already_gone_ends_quietly(
    rules_file: Path, tmp_path: Path, command: list[str]
) -> None:
    """``mlevents ... | head -1`` where the reader is gone before anything is written, and
    the output is small enough to be written only when the command ends (by the interpreter's
    flush at exit, unless main flushes it): exit 0 and nothing on stderr, for every command."""
    events = tmp_path / "events.jsonl"
    events.write_text(_body(id="a") + "\n")
    cases = _cases_file(tmp_path / "cases.json", [{"name": "c", "body": _body(), "expect": []}])
    config = tmp_path / "config.toml"
    config.write_text(f'[rules]\nfiles = ["{rules_file}"]\n')
    paths = {"RULES": rules_file, "EVENTS": events, "CASES": cases, "CONFIG": config}
    argv = [str(paths[arg]) if arg in paths else arg for arg in command]
    reader, writer = os.pipe()
    os.close(reader)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "consumer", *argv],
            cwd=ROOT, env=env, stdout=writer, stderr=subprocess.PIPE, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert done.stderr == b""
    assert done.returncode == 0


def test_test_into_a_reader_that_stops_early_ends_quietly(rules_file: Path, tmp_path: Path) -> None:
    """``mlevents test ... | head -1``: no BrokenPipeError traceback, exit 0."""
    cases = _cases_file(
        tmp_path / "cases.json",
        [{"name": f"c{n}", "body": _body(), "expect": []} for n in range(20_000)],
    )
    process = _mlevents("test", "--rules", str(rules_file), str(cases), stdin=None)
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    assert process.wait(60) == 0
    assert first == b"FAIL  c0: expected [], matched ['failed', 'everything']\n"
    assert process.stderr.read() == b""
    process.stderr.close()


MISSING_FIELD = """\
[[rules]]
name = "mail"
[[rules.actions]]
type = "log"
[[rules.actions]]
type = "email"
to = ["ml@example.com"]
subject = "{{ run.id }}: {{ data.noSuchField }}"
text = "see the studio"

[[rules]]
name = "elsewhere"
[rules.filter]
subjectBeginsWith = "nothing/"
[[rules.actions]]
type = "log"
message = "{{ data.noSuchField }}"
"""


def test_a_case_fails_when_an_action_reads_a_field_its_event_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each matched action is rendered as the worker would: a template reading a missing
    field fails the case (and the JUnit report) naming the rule, the action and the field,
    where the worker would dead-letter it."""
    rules = tmp_path / "rules.toml"
    rules.write_text(MISSING_FIELD)
    cases = _cases_file(
        tmp_path / "cases.json", [{"name": "c", "body": _body(), "expect": ["mail"]}]
    )
    report = tmp_path / "junit.xml"
    assert main(["test", "--rules", str(rules), str(cases), "--junit-xml", str(report)]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(
        "FAIL  c: rule 'mail' actions[1] (email) would fail: email: 'subject': template "
        "'{{ run.id }}: {{ data.noSuchField }}': no key 'noSuchField' here (keys: experimentName, "
    )
    (failure,) = ET.parse(report).getroot().iter("failure")
    assert "no key 'noSuchField'" in (failure.get("message") or "")


def test_test_render_prints_what_each_matched_action_would_send(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--render`` follows each case with its actions as they would be sent: the log line,
    the email's headers and body, the signed webhook's request, the signature redacted."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "r"\n[[rules.actions]]\ntype = "log"\nmessage = "{{ run.id }}"\n'
        '[[rules.actions]]\ntype = "email"\nto = ["ml@example.com"]\n'
        'subject = "Run {{ run.id }} {{ run.status }}"\ntext = "Studio: {{ studio.run_url }}"\n'
        '[[rules.actions]]\ntype = "webhook"\nurl = "https://hooks.example.com/{{ run.id }}"\n'
        'secret_env = "MLEVENTS_TEST_UNSET"\n'
    )
    cases = _cases_file(tmp_path / "cases.json", [{"name": "c", "body": _body(), "expect": ["r"]}])
    assert main(["test", "--render", "--rules", str(rules), str(cases)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:6] == [
        "pass  c",
        "    r:log#0",
        "      info: r1",
        "    r:email#1",
        "      From: mlevents@localhost",
        "      To: ml@example.com",
    ]
    assert out[6] == "      Subject: Run r1 Failed"
    assert out[7].startswith("      Date: ")
    webhook = out.index("    r:webhook#2")
    assert out[webhook - 2 : webhook + 5] == [
        "      --- text/plain",
        "      Studio: https://ml.azure.com/runs/r1?wsid=/subscriptions/s/resourceGroups/rg/"
        "providers/Microsoft.MachineLearningServices/workspaces/ws",
        "    r:webhook#2",
        "      POST https://hooks.example.com/r1",
        "      Content-Type: application/json; charset=utf-8",
        "      webhook-id: " + out[webhook + 3].split(": ")[1],
        "      aeg-event-type: Notification",
    ]
    assert "      webhook-signature: <redacted>" in out
    assert '          "id": "id-1",' in out
    assert out[-1] == "1 cases, 1 passed, 0 failed; 1/1 rules covered"


def test_explain_render_shows_the_matched_rules_actions_or_why_they_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``explain --render`` follows a match with what the rule's actions would send."""
    rules = tmp_path / "rules.toml"
    rules.write_text(MISSING_FIELD)
    event = tmp_path / "e.json"
    event.write_text(_body())
    assert main(["explain", "--render", "--rules", str(rules), "--rule", "mail", str(event)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("rule 'mail' MATCHES event id-1")
    assert out[2:5] == ["would send:", "  mail:log#0", "    info: rule matched"]
    assert out[5].startswith(
        "  FAIL  rule 'mail' actions[1] (email) would fail: email: 'subject': template "
        "'{{ run.id }}: {{ data.noSuchField }}': no key 'noSuchField' here"
    )
    assert len(out) == 6


def test_lint_warns_where_an_action_would_fail_on_a_shipped_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without events of its own, lint renders each rule's actions for the shipped sample
    events the rule matches: a field none of them has is a warning naming the sample; a rule
    that matches no sample is not judged."""
    rules = tmp_path / "rules.toml"
    rules.write_text(MISSING_FIELD)
    assert main(["lint", "--rules", str(rules)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        f"warning: {rules}:2: rule 'mail': actions[1]: would fail on the sample event "
        "dataset-drift.docs.json: email: 'subject': template "
    )
    assert out[1:] == ["2 rules, 1 warning(s)"]
