"""The rules loader: TOML and JSON documents, validation that reports every problem."""

from __future__ import annotations

import json
from typing import get_args

import msgspec
import pytest
from msgspec.inspect import FloatType, IntType, StructType, UnionType

from rules import LogAction, RuleSource, RuleTableError, WebhookAction, check_rules, load_table
from rules.actions import Action
from rules.azureml import EVENT_TYPES, PREFIX, unknown_event_type

GOOD_TOML = """\
[[rules]]
name = "failed"
description = "failed runs"
[rules.filter]
includedEventTypes = ["Microsoft.MachineLearningServices.RunStatusChanged"]
advancedFilters = [{ operatorType = "NumberGreaterThan", key = "data.x", value = 0.1 }]
[[rules.actions]]
type = "log"
"""


def _problems(*sources: RuleSource) -> list[str]:
    with pytest.raises(RuleTableError) as caught:
        load_table(list(sources))
    return [p.message_at() for p in caught.value.problems]


def test_toml_document_loads_with_decimal_values() -> None:
    """TOML floats are read as Decimal, so filter values keep every digit."""
    loaded = load_table([RuleSource("r.toml", GOOD_TOML)])
    (rule,) = loaded.table.rules
    assert rule.name == "failed"
    assert rule.line == 2
    assert str(rule.filter.advanced[0].operand) == "0.1"
    assert rule.actions == (LogAction(),)


def test_json_document_loads() -> None:
    """A JSON rules document with the same shape loads the same way."""
    text = (
        '{"rules": [{"name": "hook", "filter": {}, '
        '"actions": [{"type": "webhook", "url": "http://x"}]}]}'
    )
    (rule,) = load_table([RuleSource("r.json", text)]).table.rules
    assert rule.actions == (WebhookAction(url="http://x"),)
    assert rule.filter.event_types is None


def test_every_problem_is_reported_at_once_with_file_line_rule_and_key() -> None:
    """Faults in several rules and keys all come back in one error, each located."""
    text = """\
[[rules]]
name = "a"
[rules.filter]
advancedFilters = [
  { operatorType = "StringIn", key = "data.x", values = [1] },
  { operatorType = "NumberFoo", key = "data.y", values = [1] },
]
[[rules.actions]]
type = "email"
subject = "x"

[[rules]]
name = "b"
colour = "red"
[rules.filter]
subjectBeginsWith = 5
"""
    messages = _problems(RuleSource("bad.toml", text))
    assert any(
        m.startswith("bad.toml:2: rule 'a': filter.advancedFilters[0].values[0]: StringIn")
        for m in messages
    )
    assert any("filter.advancedFilters[1].operatorType" in m and "NumberFoo" in m for m in messages)
    assert any("rule 'a': actions[0]" in m and "to" in m for m in messages)
    assert any(
        m.startswith("bad.toml:13: rule 'b': colour: unknown rule property") for m in messages
    )
    assert any("rule 'b': filter.subjectBeginsWith: must be a string" in m for m in messages)
    assert len(messages) == 5


def test_duplicate_names_across_files_are_an_error() -> None:
    """Rule names are unique across all files; the error points at the first definition."""
    messages = _problems(RuleSource("a.toml", GOOD_TOML), RuleSource("b.toml", GOOD_TOML))
    assert messages == [
        "b.toml:2: rule 'failed': name: duplicate rule name, first defined at a.toml:2"
    ]


def test_syntax_errors_name_the_file_and_line() -> None:
    """A JSON syntax error carries the file and line of the fault."""
    messages = _problems(RuleSource("r.json", '{"rules": [\n  {"name": "x",,}\n]}'))
    assert len(messages) == 1
    assert messages[0].startswith("r.json:2: not valid JSON")


def test_missing_rules_list_and_unknown_top_level_keys() -> None:
    """A document without a rules list, or with other top-level keys, is rejected."""
    messages = _problems(RuleSource("r.toml", 'rule = "x"\n'))
    assert any("unknown top-level key(s) 'rule'" in m for m in messages)
    assert any("needs a top-level 'rules' list" in m for m in messages)


def test_event_grid_limits_are_warnings_not_errors() -> None:
    """26 advanced filters, 26 values and a 513-character string load, with warnings."""
    filters = [
        {"operatorType": "StringIn", "key": f"data.k{i}", "values": ["v"]} for i in range(26)
    ]
    filters[0]["values"] = ["x" * 513]
    text = f'{{"rules": [{{"name": "big", "filter": {{"advancedFilters": {filters!r}}}}}]}}'
    loaded = load_table([RuleSource("r.json", text.replace("'", '"'))])
    warnings = [w.message_at() for w in loaded.warnings]
    assert any("26 advanced filters" in w for w in warnings)
    assert any("26 filter values" in w for w in warnings)
    assert any("string of 513 characters" in w for w in warnings)
    assert any("has no actions" in w for w in warnings)


def test_event_types_azure_ml_never_publishes_are_warnings_naming_the_nearest() -> None:
    """An Azure ML type that does not exist, in includedEventTypes or in a StringIn on the
    event type, loads with a warning naming the nearest real type; the five real types (in
    any case) and other publishers' types give none."""
    text = """\
[[rules]]
name = "guessed"
[rules.filter]
includedEventTypes = [
  "Microsoft.MachineLearningServices.RunFailed",
  "microsoft.machinelearningservices.runcompleted",
  "Microsoft.Storage.BlobCreated",
]
[[rules.filter.advancedFilters]]
operatorType = "StringIn"
key = "eventType"
values = ["Microsoft.MachineLearningServices.ModelRegister"]
[[rules.filter.advancedFilters]]
operatorType = "StringIn"
key = "data.note"
values = ["Microsoft.MachineLearningServices.Nothing"]
[[rules.actions]]
type = "log"
"""
    loaded = load_table([RuleSource("r.toml", text)])
    assert [w.message_at() for w in loaded.warnings] == [
        "r.toml:2: rule 'guessed': filter.includedEventTypes[0]: "
        "'Microsoft.MachineLearningServices.RunFailed' is not an event type Azure ML publishes; "
        "nearest: 'Microsoft.MachineLearningServices.RunStatusChanged' "
        "(the run's status is in data.runStatus)",
        "r.toml:2: rule 'guessed': filter.advancedFilters[0].values[0]: "
        "'Microsoft.MachineLearningServices.ModelRegister' is not an event type Azure ML "
        "publishes; nearest: 'Microsoft.MachineLearningServices.ModelRegistered'",
    ]


@pytest.mark.parametrize(
    ("guess", "nearest"),
    [
        ("JobCanceled", "RunStatusChanged"),
        ("RunComplete", "RunCompleted"),
        ("DataDriftDetected", "DatasetDriftDetected"),
        ("ModelDeploymentSucceeded", "ModelDeployed"),
    ],
)
def test_the_nearest_real_event_type(guess: str, nearest: str) -> None:
    """Run states point to RunStatusChanged (v2's jobs are runs); other guesses to the most
    similar name."""
    message = unknown_event_type(PREFIX + guess)
    assert message is not None
    assert f"nearest: '{PREFIX}{nearest}'" in message
    assert all(unknown_event_type(real) is None for real in EVENT_TYPES)


@pytest.mark.parametrize(
    ("action", "fragment"),
    [
        ({"type": "smoke-signal"}, "unknown action type 'smoke-signal'"),
        ({"type": "webhook"}, "needs either 'url' or 'url_env'"),
        ({"type": "webhook", "url": "u", "format": "template"}, "'body' is required"),
        ({"type": "email", "to": ["a@b"], "subject": "s"}, "needs a body"),
        ({"type": "log", "level": "loud"}, "at `$.level`"),
        ({"type": "aml_deploy", "subscription_id": "s"}, "missing required field"),
        ({"type": "log", "colour": "red"}, "unknown field `colour`"),
    ],
)
def test_actions_are_validated_when_loaded(action: dict[str, object], fragment: str) -> None:
    """Each action type's fields are checked at load time, naming the action."""
    text = json.dumps({"rules": [{"name": "r", "actions": [action]}]})
    messages = _problems(RuleSource("r.json", text))
    assert len(messages) == 1
    assert "rule 'r': actions[0]" in messages[0]
    assert fragment in messages[0]


# Every numeric action field: (action, field, lowest accepted, highest accepted, whole).
WEBHOOK: dict[str, object] = {"type": "webhook", "url": "https://example.com/hook"}
EMAIL: dict[str, object] = {"type": "email", "to": ["a@example.com"], "subject": "s", "text": "t"}
DEPLOY: dict[str, object] = {
    "type": "aml_deploy",
    "subscription_id": "s",
    "resource_group": "g",
    "workspace": "w",
    "endpoint": "e",
    "deployment": "d",
}
ACTION_BOUNDS: list[tuple[dict[str, object], str, float, float, bool]] = [
    (WEBHOOK, "timeout_s", 0.001, 300, False),
    (EMAIL, "digest_window_s", 0.001, 86_400, False),
    (EMAIL, "max_per_hour", 1, 3600, True),
    (DEPLOY, "timeout_s", 0.001, 86_400, False),
    (DEPLOY, "instance_count", 1, 1000, True),
    (DEPLOY, "traffic_percent", 0, 100, True),
]


def _action_toml(action: dict[str, object], key: str, value: object) -> str:
    """A TOML rules document with one rule, ``r`` on line 2, whose one action sets ``key``."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in action.items()] + [f"{key} = {value}"]
    return '[[rules]]\nname = "r"\n[[rules.actions]]\n' + "\n".join(lines) + "\n"


def _out_of_bounds() -> list[object]:
    """One case per field and bad value: below, above, non-finite, a boolean, a fraction."""
    cases: list[object] = []
    for action, key, low, high, whole in ACTION_BOUNDS:
        below = ["0", "-1"] if low > 0 else ["-1"]
        bad = [*below, str(high + 1), "nan", "inf", "-inf", "true", *(["1.5"] if whole else [])]
        cases += [
            pytest.param(action, key, value, id=f"{action['type']}.{key}={value}") for value in bad
        ]
    return cases


@pytest.mark.parametrize(("action", "key", "value"), _out_of_bounds())
def test_action_numbers_out_of_bounds_are_refused(
    action: dict[str, object], key: str, value: str
) -> None:
    """Each numeric action field refuses values outside its range, nan, inf and booleans;
    the problem names the file, the line, the rule and the field."""
    messages = _problems(RuleSource("r.toml", _action_toml(action, key, value)))
    assert len(messages) == 1
    assert messages[0].startswith("r.toml:2: rule 'r': actions[0]: ")
    assert messages[0].endswith(f"at `$.{key}`")


@pytest.mark.parametrize(("action", "key", "low", "high", "whole"), ACTION_BOUNDS)
def test_action_numbers_at_their_bounds_are_accepted(
    action: dict[str, object], key: str, low: float, high: float, whole: bool
) -> None:
    """The lowest and the highest value of each field's range load."""
    for value in (low, high):
        (rule,) = load_table([RuleSource("r.toml", _action_toml(action, key, value))]).table.rules
        assert getattr(rule.actions[0], key) == value


def test_every_numeric_action_field_has_bounds() -> None:
    """Each number an action holds has a lower and an upper bound, and is in the table above."""
    found = set()
    for kind in get_args(Action):
        info = msgspec.inspect.type_info(kind)
        assert isinstance(info, StructType)
        for field in info.fields:
            options = field.type.types if isinstance(field.type, UnionType) else (field.type,)
            for option in options:
                if isinstance(option, IntType | FloatType):
                    found.add((kind.__struct_config__.tag, field.name))
                    assert option.le is not None and (option.gt, option.ge) != (None, None)
    assert found == {(action["type"], key) for action, key, *_ in ACTION_BOUNDS}


def test_an_unknown_action_type_hides_no_other_problem() -> None:
    """An unknown action type is one problem among all the others: the rule's other actions,
    the other rules, and the names of rules that have problems are all still checked."""
    text = """\
[[rules]]
name = "a"
[[rules.actions]]
type = "smoke-signal"
[[rules.actions]]
type = "email"
to = ["not an address"]
subject = "s"
text = "t"

[[rules]]
name = "b"
filter = { subjectBeginsWith = 5 }

[[rules]]
name = "a"
[[rules.actions]]
type = "log"
level = "loud"
"""
    assert _problems(RuleSource("r.toml", text)) == [
        "r.toml:2: rule 'a': actions[0]: unknown action type 'smoke-signal'; expected one of "
        "log, email, webhook, adf_pipeline_run, aml_job, aml_deploy",
        "r.toml:2: rule 'a': actions[1].to[0]: is not exactly one email address: 'not an address'",
        "r.toml:12: rule 'b': filter.subjectBeginsWith: must be a string, not the number 5",
        "r.toml:16: rule 'a': actions[0]: Invalid enum value 'loud' - at `$.level`",
        "r.toml:16: rule 'a': name: duplicate rule name, first defined at r.toml:2",
    ]


def test_check_rules_gives_the_valid_rules_and_every_parsed_action_with_the_problems() -> None:
    """check_rules does not raise: valid rules, the actions that parsed (their rule valid or
    not, each with its position), and the problems of the rest."""
    text = json.dumps({"rules": [
        {"name": "ok", "actions": [{"type": "log"}]},
        {"name": "bad", "actions": [{"type": "nope"}, {"type": "log", "message": "m"}]},
    ]})  # fmt: skip
    checked = check_rules([RuleSource("r.json", text)])
    assert [rule.name for rule in checked.rules] == ["ok"]
    assert [(a.rule, a.index, a.action) for a in checked.actions] == [
        ("ok", 0, LogAction()),
        ("bad", 1, LogAction(message="m")),
    ]
    assert [p.key for p in checked.problems] == ["actions[0]"]


def test_a_duplicate_name_in_one_file_is_reported_at_the_duplicate() -> None:
    """The second rule of a name is reported at its own line, pointing at the first one."""
    json_text = '{"rules": [\n  {"name": "x"},\n  {"name": "y"},\n  {"name": "x"}\n]}'
    assert _problems(RuleSource("r.json", json_text)) == [
        "r.json:4: rule 'x': name: duplicate rule name, first defined at r.json:2"
    ]
    toml_text = GOOD_TOML + '\n[[rules]]\nname = "other"\n\n' + GOOD_TOML
    assert _problems(RuleSource("r.toml", toml_text)) == [
        "r.toml:14: rule 'failed': name: duplicate rule name, first defined at r.toml:2"
    ]


def test_lines_of_names_in_any_quoting() -> None:
    """Literal and basic TOML strings, escapes and non-ASCII names each get their line."""
    text = "\n".join(
        [
            "[[rules]]",
            "name = 'literal'",
            "[[rules]]",
            'name = "caf\u00e9 \\"quoted\\""',
            "[[rules]]",
            'name = "Zürich"',
        ]
    )
    rules = load_table([RuleSource("r.toml", text)]).table.rules
    assert [(r.name, r.line) for r in rules] == [
        ("literal", 2),
        ('café "quoted"', 4),
        ("Zürich", 6),
    ]


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("to", "not an address", "is not exactly one email address: 'not an address'"),
        ("to", "a@example.com, b@example.com", "is not exactly one email address"),
        ("cc", "ops@example.com\nBcc: x@example.com", "has a line break or control character"),
        ("cc", "  ", "is empty"),
    ],
)
def test_a_static_email_recipient_must_be_exactly_one_address(
    field: str, value: str, fragment: str
) -> None:
    """A ``to`` or ``cc`` entry without template markup is checked when the rules load."""
    action = {"type": "email", "to": ["ok@example.com"], "subject": "s", "text": "t"}
    action[field] = ["Team <team@example.com>", value]
    messages = _problems(
        RuleSource("r.json", json.dumps({"rules": [{"name": "r", "actions": [action]}]}))
    )
    assert len(messages) == 1
    assert messages[0].startswith(f"r.json:1: rule 'r': actions[0].{field}[1]: {fragment}")


def test_templated_email_recipients_are_left_to_the_send() -> None:
    """A recipient with template markup is rendered from the event, so it is checked then."""
    action = {"type": "email", "to": ["{{ data.runTags.owner }}"], "cc": ["{% if x %}a{% endif %}"],
              "subject": "s", "text": "t"}  # fmt: skip
    loaded = load_table(
        [RuleSource("r.json", json.dumps({"rules": [{"name": "r", "actions": [action]}]}))]
    )
    assert len(loaded.table) == 1
