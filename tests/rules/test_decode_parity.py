"""Decoding parity: every researched sample decodes, numbers stay exact, bad bodies fail cleanly.

Written from the research notes (``/work/shared/research/azureml-events.md`` §1.4, §2, §3) and
the samples manifest (``samples/README.md``), not from the implementation. ``decode_body`` must
accept an array of events or one bare event object, in the Event Grid schema or CloudEvents 1.0
(told apart by ``specversion``), and raise ``DecodeError`` (nothing else) on anything else.
"""

from __future__ import annotations

import json
import random
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import DecodeError, Event, compile_filter, decode_body

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "research" / "samples"
NO_SAMPLES = f"research samples folder not found at {SAMPLES}"


def _sample_files() -> list[Path]:
    if not SAMPLES.is_dir():
        return []
    found = [
        *sorted((SAMPLES / "eventgrid-schema").glob("*.json")),
        *sorted((SAMPLES / "cloudevents-schema").glob("*.json")),
        *sorted((SAMPLES / "constructed").glob("*.eventgrid.json")),
        *sorted((SAMPLES / "constructed").glob("*.cloudevents.json")),
        *sorted((SAMPLES / "constructed").glob("single-object-body*.json")),
    ]
    return sorted(set(found))


SAMPLE_FILES = _sample_files()


def _file_params(files: list[Path]) -> list[Any]:
    if not files:
        return [pytest.param(None, id="no-samples", marks=pytest.mark.skip(reason=NO_SAMPLES))]
    return [pytest.param(f, id=f"{f.parent.name}/{f.name}") for f in files]


def parse_exact(text: str | bytes) -> Any:
    """Parse JSON the way the notes require for parity: floats as Decimal."""
    return json.loads(text, parse_float=Decimal)


def expected_schema(obj: dict[str, Any]) -> str:
    return "cloudevents" if "specversion" in obj else "eventgrid"


def assert_event_mirrors(ev: Event, obj: dict[str, Any]) -> None:
    """The decoded event exposes exactly what its JSON object says."""
    schema = expected_schema(obj)
    assert ev.schema == schema
    assert ev.id == obj["id"]
    assert ev.type == (obj["type"] if schema == "cloudevents" else obj["eventType"])
    if schema == "eventgrid" or "subject" in obj:
        assert ev.subject == obj["subject"]
    assert ev.raw == obj
    assert ev.data == obj.get("data")


# --------------------------------------------------------------------------------------
# Every sample decodes
# --------------------------------------------------------------------------------------
# [DOC] "Event Grid sends the events to subscribers in an array that has a single event."
# [notes §3] "The worker should nevertheless accept an array of any length or a bare object."
# [notes §7] "detect schema (specversion => CloudEvents, else eventType => Event Grid)".


@pytest.mark.parametrize("path", _file_params(SAMPLE_FILES))
def test_sample_decodes(path: Path) -> None:
    """Each verbatim or constructed sample decodes to events mirroring its JSON."""
    body = path.read_bytes()
    parsed = parse_exact(body)
    objects = parsed if isinstance(parsed, list) else [parsed]
    events = decode_body(body)
    assert len(events) == len(objects) >= 1
    for ev, obj in zip(events, objects, strict=True):
        assert_event_mirrors(ev, obj)


@pytest.mark.parametrize("path", _file_params(SAMPLE_FILES))
def test_sample_schema_agrees_with_its_folder(path: Path) -> None:
    """Files documented as CloudEvents decode as cloudevents; the others as eventgrid."""
    cloud = path.parent.name == "cloudevents-schema" or path.name.endswith(".cloudevents.json")
    assert {ev.schema for ev in decode_body(path.read_bytes())} == {
        "cloudevents" if cloud else "eventgrid"
    }


def test_sample_inventory() -> None:
    """The five documented event types exist in both schemas among the samples."""
    if not SAMPLE_FILES:
        pytest.skip(NO_SAMPLES)
    seen = {(ev.schema, ev.type) for f in SAMPLE_FILES for ev in decode_body(f.read_bytes())}
    for name in (
        "ModelRegistered",
        "ModelDeployed",
        "RunCompleted",
        "DatasetDriftDetected",
        "RunStatusChanged",
    ):
        assert ("eventgrid", f"Microsoft.MachineLearningServices.{name}") in seen
        assert ("cloudevents", f"Microsoft.MachineLearningServices.{name}") in seen


# [notes §3, samples README] an Event Hubs message body is the UTF-8 JSON array; the constructed
# message files carry it as "body_utf8", the rendered Capture record as "Body".
MESSAGE_BODIES = [
    ("eventhub-message.eventgrid-schema.json", "body_utf8", "eventgrid"),
    ("eventhub-message.cloudevents-schema.json", "body_utf8", "cloudevents"),
    ("capture-record.rendered.json", "Body", "eventgrid"),
]


@pytest.mark.parametrize(
    ("name", "field", "schema"), [pytest.param(*m, id=m[0]) for m in MESSAGE_BODIES]
)
def test_message_bodies_decode(name: str, field: str, schema: str) -> None:
    """The body of a constructed Event Hubs message / Capture record decodes."""
    path = SAMPLES / "constructed" / name
    if not path.is_file():
        pytest.skip(NO_SAMPLES)
    wrapper = json.loads(path.read_text(encoding="utf-8"))
    body = wrapper[field].encode("utf-8")
    events = decode_body(body)
    assert len(events) == 1
    assert events[0].schema == schema
    assert_event_mirrors(events[0], parse_exact(body)[0])
    properties = wrapper.get("application_properties") or wrapper.get("Properties") or {}
    assert events[0].id == properties["aeg-output-event-id"]


# --------------------------------------------------------------------------------------
# Exact numbers
# --------------------------------------------------------------------------------------
# [notes §1.4 #5] "DriftCoefficient 0.83503490684792081 has more digits than a float64 holds";
# [DOC, edge] "Event Grid uses the decimal .NET type to handle all numeric values."


@pytest.mark.parametrize("folder", ["eventgrid-schema", "cloudevents-schema"])
def test_verbatim_drift_coefficient_keeps_all_digits(folder: str) -> None:
    """The documented DriftCoefficient decodes as Decimal("0.83503490684792081")."""
    path = SAMPLES / folder / "DatasetDriftDetected.json"
    if not path.is_file():
        pytest.skip(NO_SAMPLES)
    (ev,) = decode_body(path.read_bytes())
    value = ev.data["DriftCoefficient"]
    assert isinstance(value, Decimal)
    assert value == Decimal("0.83503490684792081")
    assert str(value) == "0.83503490684792081"
    assert value != Decimal("0.8350349068479208")  # its float64 rounding


def test_verbatim_model_version_types_kept() -> None:
    """ModelVersion stays a JSON number in the doc sample and a string in the constructed one."""
    verbatim = SAMPLES / "eventgrid-schema" / "ModelRegistered.json"
    constructed = SAMPLES / "constructed" / "ModelRegistered.string-version.eventgrid.json"
    if not (verbatim.is_file() and constructed.is_file()):
        pytest.skip(NO_SAMPLES)
    (number_ev,) = decode_body(verbatim.read_bytes())
    (string_ev,) = decode_body(constructed.read_bytes())
    number = number_ev.data["ModelVersion"]
    assert number == 20 and not isinstance(number, bool | str | float)
    assert string_ev.data["ModelVersion"] == "7"


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-(10**30), max_value=10**30),
    )
)
def test_numbers_round_trip_exactly(value: Decimal | int) -> None:
    """Any JSON number in data decodes to a value equal to the written decimal."""
    body = f'[{{"id":"1","eventType":"t","subject":"s","data":{{"x":{value}}}}}]'.encode()
    (ev,) = decode_body(body)
    assert ev.data["x"] == value
    assert not isinstance(ev.data["x"], float | bool)


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("0.1", Decimal("0.1")),
        ("0.10", Decimal("0.10")),
        ("1e2", Decimal(100)),
        ("-0", Decimal(0)),
        ("12345678901234567890123", Decimal("12345678901234567890123")),
        ("9007199254740993", Decimal(9007199254740993)),
        ("0.09999999999999999999", Decimal("0.09999999999999999999")),
    ],
)
def test_number_literals_exact(literal: str, expected: Decimal) -> None:
    """Number literals decode to their exact decimal value, never a float."""
    body = f'{{"id":"1","eventType":"t","subject":"s","data":{{"x":{literal}}}}}'.encode()
    (ev,) = decode_body(body)
    assert ev.data["x"] == expected
    assert not isinstance(ev.data["x"], float)


# --------------------------------------------------------------------------------------
# Schema detection and the shape of a valid event
# --------------------------------------------------------------------------------------
# [DOC] Event Grid: subject, eventType, id required strings. [SPEC, CloudEvents 1.0] required
# id, source, specversion, type; subject optional. [CONTRACT] "detected by specversion";
# "DecodeError is raised for any bad body (... missing id/type, Event Grid without subject
# ...)". "CloudEvents subject is optional".

CE: dict[str, Any] = {
    "id": "ce-1",
    "source": "/subscriptions/x",
    "type": "Microsoft.MachineLearningServices.RunCompleted",
    "specversion": "1.0",
}
EG: dict[str, Any] = {
    "id": "eg-1",
    "subject": "experiments/e/runs/r",
    "eventType": "Microsoft.MachineLearningServices.RunCompleted",
    "data": {"runId": "r"},
}


def body_of(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


def test_specversion_makes_cloudevents() -> None:
    """An object with specversion is a CloudEvent, even with Event Grid fields in it."""
    (ev,) = decode_body(body_of({**CE, "eventType": "Other", "subject": "s"}))
    assert ev.schema == "cloudevents"
    assert ev.type == CE["type"]


def test_without_specversion_is_eventgrid() -> None:
    """An object without specversion is an Event Grid event."""
    (ev,) = decode_body(body_of(EG))
    assert ev.schema == "eventgrid"
    assert ev.type == EG["eventType"]
    assert ev.subject == EG["subject"]


def test_cloudevent_subject_optional() -> None:
    """A CloudEvent without subject (or data) decodes; its subject is empty."""
    (ev,) = decode_body(body_of(CE))
    assert ev.schema == "cloudevents"
    assert not ev.subject


def test_cloudevent_extension_attribute_kept() -> None:
    """CloudEvents extension attributes survive decoding in raw."""
    (ev,) = decode_body(body_of({**CE, "comexampleothervalue": 5}))
    assert ev.raw["comexampleothervalue"] == 5


def test_bare_object_and_array_bodies() -> None:
    """A bare event object and arrays of several events (both schemas) decode in order."""
    assert [e.id for e in decode_body(body_of(EG))] == ["eg-1"]
    events = decode_body(body_of([EG, CE, {**EG, "id": "eg-2"}]))
    assert [e.id for e in events] == ["eg-1", "ce-1", "eg-2"]
    assert [e.schema for e in events] == ["eventgrid", "cloudevents", "eventgrid"]


def test_reasonable_nesting_and_size_decode() -> None:
    """A 16-level data object and a ~500 KB event (Event Grid allows 1 MB) decode."""
    deep: Any = "leaf"
    for _ in range(16):
        deep = {"a": deep}
    (ev,) = decode_body(body_of([{**EG, "data": deep}]))
    key = "data" + ".a" * 16
    advanced = [{"operatorType": "StringIn", "key": key, "values": ["LEAF"]}]
    f = compile_filter({"advancedFilters": advanced})
    assert f.matches(ev)
    (big,) = decode_body(body_of([{**EG, "data": {"blob": "x" * 500_000}}]))
    assert len(big.data["blob"]) == 500_000


BAD_BODIES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"   ", id="whitespace"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"\xff\xfe[\x00]\x00", id="utf16-bytes"),
    pytest.param(b'[{"id":"\xff","eventType":"t","subject":"s"}]', id="invalid-utf8-in-string"),
    pytest.param(b'[{"id":"\xed\xa0\x80","eventType":"t","subject":"s"}]', id="utf8-surrogate"),
    pytest.param(b'[{"id":"\xc0\xaf","eventType":"t","subject":"s"}]', id="overlong-utf8"),
    pytest.param(b"null", id="null"),
    pytest.param(b"42", id="number"),
    pytest.param(b'"event"', id="string"),
    pytest.param(b"true", id="bool"),
    pytest.param(b"[1]", id="array-of-number"),
    pytest.param(b"[null]", id="array-of-null"),
    pytest.param(b'[["x"]]', id="array-of-array"),
    pytest.param(body_of([EG, 1]), id="second-element-not-object"),
    pytest.param(body_of([EG, None]), id="second-element-null"),
    pytest.param(body_of({}), id="empty-object"),
    pytest.param(body_of({"data": {}}), id="data-only"),
    pytest.param(body_of({k: v for k, v in EG.items() if k != "id"}), id="eg-no-id"),
    pytest.param(body_of({k: v for k, v in EG.items() if k != "eventType"}), id="eg-no-type"),
    pytest.param(body_of({k: v for k, v in EG.items() if k != "subject"}), id="eg-no-subject"),
    pytest.param(body_of({**EG, "id": 1}), id="eg-id-number"),
    pytest.param(body_of({**EG, "id": None}), id="eg-id-null"),
    pytest.param(body_of({**EG, "id": {"x": 1}}), id="eg-id-object"),
    pytest.param(body_of({**EG, "eventType": 5}), id="eg-type-number"),
    pytest.param(body_of({**EG, "eventType": ["t"]}), id="eg-type-array"),
    pytest.param(body_of({**EG, "subject": None}), id="eg-subject-null"),
    pytest.param(body_of({**EG, "subject": 7}), id="eg-subject-number"),
    pytest.param(body_of({k: v for k, v in CE.items() if k != "id"}), id="ce-no-id"),
    pytest.param(body_of({k: v for k, v in CE.items() if k != "type"}), id="ce-no-type"),
    pytest.param(body_of({**CE, "type": None}), id="ce-type-null"),
    pytest.param(body_of({**CE, "id": 3}), id="ce-id-number"),
    pytest.param(body_of({**CE, "type": True}), id="ce-type-bool"),
    pytest.param(body_of({**CE, "subject": 1}), id="ce-subject-number"),
    pytest.param(body_of({k: v for k, v in CE.items() if k != "specversion"}), id="ce-no-spec"),
    pytest.param(body_of(EG)[:-1], id="truncated"),
    pytest.param(body_of(EG) + b"x", id="trailing-garbage"),
    pytest.param(body_of(EG) + body_of(EG), id="two-documents"),
    pytest.param(b"[" * 100_000, id="bracket-bomb-unclosed"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="bracket-bomb-closed"),
    pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, id="object-bomb"),
    pytest.param(
        b'[{"id":"1","eventType":"t","subject":"s","data":'
        + b'{"a":' * 10_000
        + b"1"
        + b"}" * 10_000
        + b"}]",
        id="data-bomb",
    ),
    pytest.param(b"[" + b"1," * 10 + b"NaN]", id="nan"),
    pytest.param(b'[{"id":"1","eventType":"t","subject":"s","data":{"x":Infinity}}]', id="inf"),
    pytest.param(b"[{'id':'1'}]", id="single-quotes"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bad_body_raises_decode_error(body: bytes) -> None:
    """Anything that is not an event (or array of events) raises DecodeError."""
    with pytest.raises(DecodeError):
        decode_body(body)


@pytest.mark.timeout(30)
def test_absurd_size_raises_decode_error() -> None:
    """A 16 MB body (Event Grid caps an event at 1 MB) raises DecodeError."""
    body = b'[{"id":"1","eventType":"t","subject":"s","data":{"x":"' + b"a" * (16 << 20) + b'"}}]'
    with pytest.raises(DecodeError):
        decode_body(body)


EVENT_HUBS_MAX_MESSAGE = 1_048_576
"""Event Hubs carries at most 1 MiB a message, so no longer body is one Event Grid wrote."""


def _body_of_size(size: int, letter: str = "a") -> str:
    """A one-event body of exactly ``size`` UTF-8 bytes, its data string of ``letter``s
    (padded with one "a" where a two-byte letter leaves an odd byte)."""
    head, tail = '[{"id":"1","eventType":"t","subject":"s","data":{"x":"', '"}}]'
    room = size - len(head) - len(tail)
    width = len(letter.encode("utf-8"))
    return head + letter * (room // width) + "a" * (room % width) + tail


@pytest.mark.parametrize("letter", ["a", "é"], ids=["ascii", "two-byte-letters"])
def test_a_body_of_exactly_one_mebibyte_decodes_and_one_byte_more_does_not(letter: str) -> None:
    """The limit counts UTF-8 bytes, as bytes or as text: a body of exactly 1 MiB decodes; one
    more byte (a space, which JSON allows at the end) is refused for its size alone."""
    text = _body_of_size(EVENT_HUBS_MAX_MESSAGE, letter)
    data = text.encode("utf-8")
    assert len(data) == EVENT_HUBS_MAX_MESSAGE
    too_large = "body is 1048577 bytes, more than the limit of 1048576"
    pairs: list[tuple[str | bytes, str | bytes]] = [(text, text + " "), (data, data + b" ")]
    for body, one_more in pairs:
        (event,) = decode_body(body)
        assert event.data["x"].startswith(letter)
        with pytest.raises(DecodeError, match=too_large):
            decode_body(one_more)


# --------------------------------------------------------------------------------------
# Fuzzing: only DecodeError, never a hang
# --------------------------------------------------------------------------------------

# One filter per operator over the keys AML rules use, to show decoded events are safe to
# evaluate whatever they hold.
PROBE_FILTERS = [
    compile_filter({"advancedFilters": [adv], "enableAdvancedFilteringOnArrays": arrays})
    for arrays in (False, True)
    for adv in (
        {"operatorType": "NumberIn", "key": "data.DriftCoefficient", "values": [1]},
        {"operatorType": "NumberNotIn", "key": "data.ModelVersion", "values": [20]},
        {"operatorType": "NumberLessThan", "key": "data.x", "value": 1},
        {"operatorType": "NumberGreaterThan", "key": "data.x", "value": 1},
        {"operatorType": "NumberLessThanOrEquals", "key": "id", "value": 1},
        {"operatorType": "NumberGreaterThanOrEquals", "key": "subject", "value": 1},
        {"operatorType": "BoolEquals", "key": "data.runTags.flag", "value": True},
        {"operatorType": "StringIn", "key": "data.runStatus", "values": ["Failed"]},
        {"operatorType": "StringNotIn", "key": "eventType", "values": ["x"]},
        {"operatorType": "StringBeginsWith", "key": "subject", "values": ["experiments/"]},
        {"operatorType": "StringEndsWith", "key": "topic", "values": ["prod"]},
        {"operatorType": "StringContains", "key": "data.runType", "values": ["pipeline"]},
        {"operatorType": "NumberInRange", "key": "data.DriftCoefficient", "values": [[0, 1]]},
        {"operatorType": "NumberNotInRange", "key": "data.a.b.c", "values": [[0, 1]]},
        {"operatorType": "StringNotBeginsWith", "key": "source", "values": ["/"]},
        {"operatorType": "StringNotEndsWith", "key": "type", "values": ["d"]},
        {"operatorType": "StringNotContains", "key": "specversion", "values": ["1"]},
        {"operatorType": "IsNullOrUndefined", "key": "data.runTags"},
        {"operatorType": "IsNotNull", "key": "data"},
    )
] + [
    compile_filter(
        {
            "includedEventTypes": ["Microsoft.MachineLearningServices.RunStatusChanged"],
            "subjectBeginsWith": "experiments/",
            "subjectEndsWith": "z",
            "isSubjectCaseSensitive": True,
        }
    )
]


def decode_or_error(body: bytes) -> tuple[Event, ...] | None:
    """decode_body, accepting only success or DecodeError; checks decoded events are sane."""
    try:
        events = decode_body(body)
    except DecodeError:
        return None
    assert isinstance(events, tuple)
    for ev in events:
        assert isinstance(ev, Event)
        assert isinstance(ev.id, str)
        assert isinstance(ev.type, str)
        assert ev.schema in ("eventgrid", "cloudevents")
        if ev.schema == "eventgrid":
            assert isinstance(ev.subject, str)
        else:
            assert ev.subject is None or isinstance(ev.subject, str)
        for f in PROBE_FILTERS:
            assert f.matches(ev) in (True, False)
            assert f.explain(ev).matched is f.matches(ev)
    return events


WEIRD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    "",
    "x" * 5000,
    [],
    [1, "a", None],
    {},
    {"a": {"b": [1, {"c": None}]}},
    "\u0000",
    "\ud7ff\ue000",
    10**40,
]


def _mutate_structure(rng: random.Random, obj: Any) -> Any:
    """Replace, delete or retype one field somewhere in a parsed sample."""
    if isinstance(obj, list) and obj:
        obj = list(obj)
        choice = rng.random()
        if choice < 0.2:
            obj.append(rng.choice(WEIRD_VALUES))
        elif choice < 0.3:
            obj[rng.randrange(len(obj))] = rng.choice(WEIRD_VALUES)
        else:
            i = rng.randrange(len(obj))
            obj[i] = _mutate_structure(rng, obj[i])
        return obj
    if isinstance(obj, dict) and obj:
        obj = dict(obj)
        key = rng.choice([*obj, "id", "type", "eventType", "subject", "specversion", "data"])
        choice = rng.random()
        if choice < 0.25:
            obj.pop(key, None)
        elif choice < 0.6 or key not in obj:
            obj[key] = rng.choice(WEIRD_VALUES)
        else:
            obj[key] = _mutate_structure(rng, obj[key])
        return obj
    return rng.choice(WEIRD_VALUES)


def _mutate_bytes(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    choice = rng.randrange(9)
    if choice == 0 and data:  # byte flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif choice == 1:  # truncation
        del data[rng.randrange(len(data) + 1) :]
    elif choice == 2:  # random bytes inserted
        i = rng.randrange(len(data) + 1)
        data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif choice == 3:  # duplicate a slice
        i = rng.randrange(len(data) + 1)
        j = rng.randrange(i, len(data) + 1)
        data[j:j] = data[i:j]
    elif choice == 4:  # nesting bomb in front
        depth = rng.choice([100, 1000, 100_000])
        data[0:0] = (b"[" if rng.random() < 0.5 else b'{"a":') * depth
    elif choice == 5:  # invalid UTF-8 sequences
        i = rng.randrange(len(data) + 1)
        data[i:i] = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
    elif choice == 6:  # huge string
        i = rng.randrange(len(data) + 1)
        data[i:i] = b'"' + b"z" * rng.choice([1000, 100_000]) + b'"'
    elif choice == 7:  # delete a slice
        i = rng.randrange(len(data) + 1)
        del data[i : rng.randrange(i, len(data) + 1)]
    else:  # replace a structural character
        positions = [i for i, b in enumerate(data) if b in b'{}[]:,"']
        if positions:
            data[rng.choice(positions)] = rng.choice(b'{}[]:,"x0 ')
    return bytes(data)


def _seed_bodies() -> list[bytes]:
    bodies = [body_of(EG), body_of([EG, CE]), body_of(CE)]
    for path in SAMPLE_FILES:
        bodies.append(path.read_bytes())
    return bodies


@pytest.mark.timeout(60)
def test_fuzz_mutated_samples_only_raise_decode_error() -> None:
    """Thousands of mutated samples decode or raise DecodeError, within seconds."""
    rng = random.Random(20240514)
    seeds = _seed_bodies()
    parsed_seeds = [json.loads(b) for b in seeds]
    started = time.monotonic()
    decoded = failed = 0
    for round_ in range(4000):
        if round_ % 2:
            body = _mutate_bytes(rng, rng.choice(seeds))
            if rng.random() < 0.3:
                body = _mutate_bytes(rng, body)
        else:
            mutated = _mutate_structure(rng, rng.choice(parsed_seeds))
            if rng.random() < 0.2:
                mutated = rng.choice([mutated, [mutated], [mutated, mutated], {"x": mutated}])
            body = json.dumps(mutated).encode("utf-8")
        if decode_or_error(body) is None:
            failed += 1
        else:
            decoded += 1
    elapsed = time.monotonic() - started
    assert elapsed < 20, f"fuzzing took {elapsed:.1f}s"
    # Both outcomes must actually occur, or the mutations are not exercising anything.
    assert decoded > 100 and failed > 100, (decoded, failed)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(body: bytes) -> None:
    """Arbitrary bytes decode or raise DecodeError, nothing else."""
    decode_or_error(body)


json_like = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
        st.sampled_from(["id", "1.0", "eventType", "experiments/x"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(
                st.sampled_from(
                    ["id", "type", "eventType", "subject", "specversion", "data", "source"]
                ),
                st.text(max_size=5),
            ),
            inner,
            max_size=6,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_random_json_only_raises_decode_error(value: Any) -> None:
    """Arbitrary JSON documents decode or raise DecodeError, nothing else."""
    decode_or_error(json.dumps(value).encode("utf-8"))


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=20),
            "eventType": st.text(min_size=1, max_size=20),
            "subject": st.text(min_size=1, max_size=20),
        },
        optional={"data": json_like, "topic": st.text(max_size=10), "dataVersion": st.text()},
    )
)
def test_valid_eventgrid_shapes_decode(obj: dict[str, Any]) -> None:
    """Any object with string id, eventType and subject decodes as an Event Grid event."""
    (ev,) = decode_body(json.dumps([obj]).encode("utf-8"))
    assert ev.schema == "eventgrid"
    assert (ev.id, ev.type, ev.subject) == (obj["id"], obj["eventType"], obj["subject"])
