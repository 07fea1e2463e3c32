"""Templates: what they see of an event, the sandbox, escaping, and load-time checks."""

from __future__ import annotations

import json
import re
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
    assert render("50% <b>", names, escape="html") == "50% <b>"


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
    assert render("<p>{{ data.runTags.note }}</p>", names, escape="html") == (
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


def test_url_values_are_one_percent_encoded_component_wherever_they_sit() -> None:
    """In the path a value is one segment, in the query one key or value, in the fragment
    the fragment: '/', '?', '&', '=', '#' and '@' are encoded; the rule's text is not."""
    names = _event(runId="@127.0.0.1:18807/x?a=1&b=2#f", runTags={"n": 5})
    url = (
        "https://h.example:8443/r/{{ data.runId }}?{{ data.runTags.n }}={{ data.runId }}"
        "#{{ event.id }}"
    )
    encoded = "%40127.0.0.1%3A18807%2Fx%3Fa%3D1%26b%3D2%23f"
    assert render(url, names, escape="url") == (
        f"https://h.example:8443/r/{encoded}?5={encoded}#e-1"
    )
    assert render("https://h.example/a b", names, escape="url") == "https://h.example/a b"


def test_url_values_inside_if_blocks_are_encoded_too() -> None:
    """Where a value sits is read from the literal text before it, in source order."""
    names = _event(runId="a/b")
    url = "https://h.example/x{% if data.runId %}?run={{ data.runId }}{% else %}/none{% endif %}"
    assert render(url, names, escape="url") == "https://h.example/x?run=a%2Fb"


@pytest.mark.parametrize(
    "url",
    [
        "{{ data.callback }}",
        "http://hooks.example.invalid{{ data.path }}",
        "https://{% if 1 %}a.example{% endif %}/",
        "http://h.example:{{ data.port }}/",
        "http://h.example {{- data.path }}",
        "http://h{# comment #}.example/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "//h.example/x",
        "http:///x",
    ],
)
def test_a_url_must_begin_with_its_scheme_and_host_written_out(url: str) -> None:
    with pytest.raises(TemplateError, match="must begin with http:// or https:// and the host"):
        render(url, _event(callback="http://169.254.169.254/latest", path="x", port=1),
               escape="url")  # fmt: skip


def test_json_values_in_strings_are_string_content_and_outside_json_values() -> None:
    note = 'a", "admin": true, "z": "\\ \n\t\x01'
    names = _event(note=note, count=3, ratio=0.5, missing=None, tags={"k": [1, "v"]})
    body = (
        '{"text": "{{ data.note }}", "n": {{ data.count }}, "r": {{ data.ratio }},'
        ' "none": {{ data.missing }}, "empty": "{{ data.missing }}", "tags": {{ data.tags }},'
        ' "quoted": {{ data.note }}}'
    )
    rendered = render(body, names, escape="json")
    assert json.loads(rendered) == {
        "text": note, "n": 3, "r": 0.5, "none": None, "empty": "", "tags": {"k": [1, "v"]},
        "quoted": note,
    }  # fmt: skip
    assert '"n": 3, "r": 0.5,' in rendered


def test_json_branches_and_loops_that_stay_balanced_render() -> None:
    names = _event(runTags={"a": 'x"y', "b": "z"}, failed=True)
    body = (
        '{"tags": [{% for k, v in data.runTags.items() %}"{{ k }}={{ v }}",{% endfor %}""],'
        ' "s": {% if data.failed %}"{{ event.id }}"{% else %}{{ event.id }}{% endif %}}'
    )
    assert json.loads(render(body, names, escape="json")) == {
        "tags": ['a=x"y', "b=z", ""],
        "s": "e-1",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"a": {% if x %}"{% endif %}{{ y }}"}', "branches of an {% if %} end in different"),
        ('[{% for x in y %}"{% endfor %}{{ x }}]', "{% for %} body must end where it began"),
        ('{"a": "\\{{ y }}"}', "a value cannot follow a backslash"),
        ('{% macro m() %}{{ x }}{% endmacro %}{"a": "{{ m() }}"}', "{% macro %} is not allowed"),
        ('{% set s %}"{{ x }}{% endset %}{"a": {{ s }}}', "{% set %} is not allowed"),
        ('{% filter upper %}{"a": "{{ x }}"}{% endfilter %}', "{% filter %} is not allowed"),
        ('{% include "x" %}', "{% include %} is not allowed"),
    ],
)
def test_json_templates_whose_places_are_ambiguous_are_refused(body: str, message: str) -> None:
    assert check_value({"body": body}) == []  # as plain text they parse
    with pytest.raises(TemplateError, match=re.escape(message)):
        render(body, _event(x="1", y="2"), escape="json")


def test_the_loader_checks_webhook_urls_and_bodies_by_their_kind() -> None:
    """A URL whose host is a template and a body whose strings are ambiguous are load
    problems naming the field."""
    text = """\
[[rules]]
name = "hook"
[[rules.actions]]
type = "webhook"
url = "https://{{ data.host }}/x"
format = "template"
body = '{"a": {% if data.x %}"{% endif %}{{ data.y }}"}'
"""
    with pytest.raises(RuleTableError) as caught:
        load_table([RuleSource("r.toml", text)])
    keys = [problem.key for problem in caught.value.problems]
    assert keys == ["actions[0].url", "actions[0].body"]
