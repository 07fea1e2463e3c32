"""Templates: what they see of an event, the sandbox, escaping, and load-time checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rules import RuleSource, RuleTableError, decode_body, load_table
from rules.templates import TemplateError, check_value, context, render, render_value

EVENTS = Path(__file__).resolve().parents[2] / "consumer" / "examples" / "events"


def _context(name: str) -> dict[str, Any]:
    return context(decode_body((EVENTS / name).read_bytes())[0])


def _event(**data: Any) -> dict[str, Any]:
    body = {
        "id": "e-1",
        "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "subject": "experiments/x/runs/r-1",
        "topic": "/subscriptions/s/resourceGroups/rg/providers/"
        "Microsoft.MachineLearningServices/workspaces/ws",
        "eventTime": "2026-01-01T00:00:00Z",
        "data": data,
        "dataVersion": "2",
    }
    return context(decode_body(json.dumps(body))[0])


def test_data_keys_are_read_ignoring_case_at_every_level() -> None:
    """The docs write ModelTags, real events modelTags: both spellings read the same value."""
    names = _context("model-registered.production.json")
    assert render("{{ data.ModelName }}/{{ data.modelname }}", names) == (
        "credit-risk-xgb/credit-risk-xgb"
    )
    assert render("{{ data.MODELTAGS.Stage }}", names) == "Production"
    assert render("{{ data['modelTags']['stage'] }}", names) == "Production"


def test_typed_payload_names_and_studio_links() -> None:
    """model/run/workspace/studio come from the typed payload and the topic."""
    model = _context("model-registered.production.json")
    assert (
        render("{{ model.id }} in {{ workspace.name }}", model)
        == "credit-risk-xgb:8 in mlw-prod-weu"
    )
    assert render("{{ studio.model_url }}", model).startswith(
        "https://ml.azure.com/model/credit-risk-xgb:8/details?wsid=/subscriptions/"
    )
    run = _context("run-failed.json")
    assert render("{{ run.status }} {{ run.id }}", run) == "Failed brave_lamp_x7k2m9q1pz"
    assert render("{{ studio.run_url }}", run).startswith(
        "https://ml.azure.com/runs/brave_lamp_x7k2m9q1pz?wsid=/subscriptions/6f1c2a3b"
    )
    drift = _context("dataset-drift.moderate.json")
    assert "coefficient" in drift["drift"]
    assert "model" not in drift and "run_url" not in drift["studio"]


def test_a_missing_name_is_an_error_that_lists_what_is_there() -> None:
    """Strict: a deployment is never named 'v' because a tag was missing."""
    with pytest.raises(TemplateError, match=r"no key 'nope' here \(keys: .*runId"):
        render("{{ data.nope }}", _context("run-failed.json"))
    assert render("{{ data.nope | default('none') }}", _context("run-failed.json")) == "none"


def test_none_renders_empty_and_text_without_syntax_is_returned_as_is() -> None:
    names = _event(runId=None)
    assert render("[{{ data.runId }}]", names) == "[]"
    assert render("50% <b>", names, html=True) == "50% <b>"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ data.__class__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ event.items.__self__.__class__ }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{% endfor %}",
    ],
)
def test_the_sandbox_refuses_python_internals(template: str) -> None:
    with pytest.raises(TemplateError):
        render(template, _event(runId="r"))


def test_event_data_is_never_evaluated_as_a_template() -> None:
    """A run tag holding template syntax comes out literally."""
    names = _event(runTags={"note": "{{ 7 * 7 }}{% raw %}"})
    assert render("{{ data.runTags.note }}", names) == "{{ 7 * 7 }}{% raw %}"


def test_html_bodies_escape_event_values() -> None:
    names = _event(runTags={"note": "<script>alert(1)</script>&"})
    assert render("<p>{{ data.runTags.note }}</p>", names, html=True) == (
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;&amp;</p>"
    )
    assert render("{{ data.runTags.note }}", names) == "<script>alert(1)</script>&"


def test_render_value_renders_strings_inside_tables_and_lists() -> None:
    names = _event(runId="r-9")
    value = {"run": "{{ data.runId }}", "list": ["{{ event.id }}", 3], "n": 1.5}
    assert render_value(value, names) == {"run": "r-9", "list": ["e-1", 3], "n": 1.5}


def test_check_value_names_the_field_of_a_broken_template() -> None:
    assert check_value({"a": ["ok", "{{ broken"]}) == [
        ("a[1]", "template '{{ broken' does not parse: unexpected end of template, "
                 "expected 'end of print statement'."),
    ]  # fmt: skip


def test_the_loader_reports_broken_templates_with_rule_and_field() -> None:
    """Templates are checked when rules load, not when the first event arrives."""
    text = """\
[[rules]]
name = "mail"
[rules.filter]
includedEventTypes = ["X"]
[[rules.actions]]
type = "email"
to = ["{{ data.owner }"]
subject = "ok {{ event.id }}"
text = "{% if %}"
"""
    with pytest.raises(RuleTableError) as caught:
        load_table([RuleSource("r.toml", text)])
    messages = [problem.message_at() for problem in caught.value.problems]
    assert len(messages) == 2
    assert "mail" in messages[0] and "actions[0].to[0]" in messages[0]
    assert "actions[0].text" in messages[1]
