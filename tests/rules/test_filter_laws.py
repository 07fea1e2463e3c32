"""Algebraic laws of the Event Grid filter language, checked with hypothesis.

Each law follows from the documented semantics (research notes §4, the engine contract in
the issue): complements of the positive/negated operator pairs on present values of the right
type, AND across filters, OR within values (AND for the Not operators), case-insensitivity,
exact decimals, and the array flag. Every event goes through ``decode_body``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rules import Event, compile_filter, decode_body
from tests.support.filters import ALL_OPERATORS, Raw, numbers, to_json

SETTINGS = settings(max_examples=200, deadline=None)

# --------------------------------------------------------------------------------------
# Helpers (JSON bodies with exact number literals)
# --------------------------------------------------------------------------------------


MISSING = object()


def exponent_form(value: Decimal | int) -> Raw:
    """``value`` written as <digits>E<exponent> with two extra trailing zeros."""
    sign, digits, exponent = Decimal(value).as_tuple()
    assert isinstance(exponent, int)
    text = "0" if not any(digits) else "".join(str(d) for d in digits) + "00"
    return Raw(f"{'-' if sign else ''}{text}E{exponent - 2}")


def event_with(value: object, *, event_type: str = "Microsoft.MachineLearningServices.X") -> Event:
    """An Event Grid event whose data is {"k": value} (or {} when value is MISSING)."""
    data: dict[str, Any] = {} if value is MISSING else {"k": value}
    event = {
        "topic": "/subscriptions/x/resourceGroups/y",
        "subject": "experiments/e/runs/r",
        "eventType": event_type,
        "eventTime": "2024-05-14T09:21:37Z",
        "id": "id-1",
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }
    events = decode_body(to_json([event]).encode("utf-8"))
    assert len(events) == 1
    return events[0]


def passes(event: Event, *advanced: dict[str, Any], arrays: bool = False, **rest: Any) -> bool:
    """Evaluate a filter made of ``advanced`` filters (and other filter parts) on ``event``."""
    filter_obj: dict[str, Any] = {"advancedFilters": list(advanced), **rest}
    if arrays:
        filter_obj["enableAdvancedFilteringOnArrays"] = True
    compiled = compile_filter(filter_obj)
    answer = compiled.matches(event)
    assert compiled.explain(event).matched is answer
    return answer


def adv(operator: str, key: str = "data.k", /, **args: Any) -> dict[str, Any]:
    return {"operatorType": operator, "key": key, **args}


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------

# A small alphabet so that equal / prefix / substring relations actually occur, plus some
# non-ASCII letters (folding) and arbitrary text.
small_text = st.text(alphabet="aAbBzZß-._/ 0", max_size=6)
any_text = st.text(max_size=8)
texts = st.one_of(small_text, any_text)
filter_texts = st.one_of(st.text(alphabet="aAbBzZß-._/ 0", min_size=1, max_size=4), any_text)

scalars = st.one_of(texts, numbers, st.booleans())
json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(small_text, inner, max_size=3)
    ),
    max_leaves=6,
)
maybe_missing = st.one_of(st.just(MISSING), json_values)

STRING_PAIRS = [
    ("StringIn", "StringNotIn"),
    ("StringBeginsWith", "StringNotBeginsWith"),
    ("StringEndsWith", "StringNotEndsWith"),
    ("StringContains", "StringNotContains"),
]
POSITIVE_STRING_OPS = [p for p, _ in STRING_PAIRS]
NEGATED_STRING_OPS = [n for _, n in STRING_PAIRS]


@st.composite
def related_texts(draw: st.DrawFn, base: str) -> str:
    """Filter strings that often stand in a prefix/suffix/substring relation to ``base``."""
    choice = draw(st.integers(min_value=0, max_value=3))
    if choice == 0 or not base:
        return draw(filter_texts)
    i = draw(st.integers(min_value=0, max_value=len(base)))
    j = draw(st.integers(min_value=i, max_value=len(base)))
    piece = base[i:j] or base
    return swap_ascii_case(piece, draw(st.lists(st.booleans(), max_size=len(piece))))


def swap_ascii_case(text: str, flips: list[bool]) -> str:
    """Swap the case of the ASCII letters at the positions where ``flips`` is true."""
    out = []
    for index, char in enumerate(text):
        flip = index < len(flips) and flips[index]
        out.append(char.swapcase() if flip and char.isascii() and char.isalpha() else char)
    return "".join(out)


@st.composite
def ranges(draw: st.DrawFn) -> list[list[Any]]:
    pairs = draw(st.lists(st.tuples(numbers, numbers), min_size=1, max_size=3))
    return [sorted(pair) for pair in pairs]


@st.composite
def any_advanced(draw: st.DrawFn, key: str) -> dict[str, Any]:
    """An arbitrary valid advanced filter on ``key``."""
    op = draw(st.sampled_from(ALL_OPERATORS))
    if op in ("IsNullOrUndefined", "IsNotNull"):
        return adv(op, key)
    if op == "BoolEquals":
        return adv(op, key, value=draw(st.booleans()))
    if op in ("NumberInRange", "NumberNotInRange"):
        return adv(op, key, values=draw(ranges()))
    if op in ("NumberIn", "NumberNotIn"):
        return adv(op, key, values=draw(st.lists(numbers, min_size=1, max_size=4)))
    if op.startswith("Number"):
        return adv(op, key, value=draw(numbers))
    return adv(op, key, values=draw(st.lists(filter_texts, min_size=1, max_size=4)))


# --------------------------------------------------------------------------------------
# Complement laws on present scalars of the right type
# --------------------------------------------------------------------------------------
# [DOC] the Not operators are defined as "not ... any of the specified filter values", with
# the same loops as their positive twins but FAIL_MATCH instead of MATCH: on a present scalar
# of the operator's type exactly one of the pair passes.


@SETTINGS
@given(st.data(), texts, st.sampled_from(STRING_PAIRS))
def test_string_pairs_are_complements(
    data: st.DataObject, value: str, pair: tuple[str, str]
) -> None:
    """On a present string, exactly one of StringX and StringNotX passes (same values)."""
    values = data.draw(st.lists(related_texts(value), min_size=1, max_size=4))
    event = event_with(value)
    positive, negated = pair
    assert passes(event, adv(positive, values=values)) != passes(event, adv(negated, values=values))


@SETTINGS
@given(numbers, st.lists(numbers, min_size=1, max_size=4), st.data())
def test_number_in_not_in_complements(
    value: Decimal | int, values: list[Any], data: st.DataObject
) -> None:
    """On a present number, exactly one of NumberIn and NumberNotIn passes."""
    if data.draw(st.booleans()):
        values = [*values, value]
    event = event_with(value)
    assert passes(event, adv("NumberIn", values=values)) != passes(
        event, adv("NumberNotIn", values=values)
    )


@SETTINGS
@given(numbers, ranges())
def test_number_range_complements(value: Decimal | int, bounds: list[list[Any]]) -> None:
    """On a present number, exactly one of NumberInRange and NumberNotInRange passes."""
    event = event_with(value)
    assert passes(event, adv("NumberInRange", values=bounds)) != passes(
        event, adv("NumberNotInRange", values=bounds)
    )


@SETTINGS
@given(numbers, numbers)
def test_less_than_xor_greater_or_equal(value: Decimal | int, bound: Decimal | int) -> None:
    """On a present number, NumberLessThan(x) xor NumberGreaterThanOrEquals(x)."""
    event = event_with(value)
    lt = passes(event, adv("NumberLessThan", value=bound))
    ge = passes(event, adv("NumberGreaterThanOrEquals", value=bound))
    gt = passes(event, adv("NumberGreaterThan", value=bound))
    le = passes(event, adv("NumberLessThanOrEquals", value=bound))
    assert lt != ge
    assert gt != le
    assert lt == (Decimal(value) < Decimal(bound))


@SETTINGS
@given(numbers, numbers, numbers)
def test_range_is_ge_and_le(value: Decimal | int, a: Decimal | int, b: Decimal | int) -> None:
    """NumberInRange [[lo, hi]] == GreaterThanOrEquals lo AND LessThanOrEquals hi (inclusive)."""
    lo, hi = sorted([a, b])
    event = event_with(value)
    in_range = passes(event, adv("NumberInRange", values=[[lo, hi]]))
    both = passes(
        event,
        adv("NumberGreaterThanOrEquals", value=lo),
        adv("NumberLessThanOrEquals", value=hi),
    )
    assert in_range == both
    assert passes(event, adv("NumberIn", values=[lo])) == passes(
        event, adv("NumberInRange", values=[[lo, lo]])
    )


@SETTINGS
@given(numbers, st.lists(numbers, min_size=1, max_size=3))
def test_number_representation_does_not_matter(value: Decimal | int, values: list[Any]) -> None:
    """Equal numbers written differently (trailing zeros, exponent) give the same answers."""
    plain = event_with(value)
    sign, digits, exponent = Decimal(value).as_tuple()
    assert isinstance(exponent, int)
    padded = event_with(Decimal((sign, (*digits, 0, 0, 0), exponent - 3)))  # no rounding
    scaled = event_with(exponent_form(value))
    for operator in ("NumberIn", "NumberNotIn"):
        expected = passes(plain, adv(operator, values=values))
        assert passes(padded, adv(operator, values=values)) == expected
        assert passes(scaled, adv(operator, values=values)) == expected


# --------------------------------------------------------------------------------------
# Null checks
# --------------------------------------------------------------------------------------
# [DOC] IsNullOrUndefined "evaluates to true if the key's value is NULL or undefined";
# IsNotNull "evaluates to true if the key's value isn't NULL or undefined".


@SETTINGS
@given(maybe_missing, st.booleans())
def test_is_null_or_undefined_is_not_is_not_null(value: object, arrays: bool) -> None:
    """IsNullOrUndefined == not IsNotNull for every value (absent, null, any JSON)."""
    event = event_with(value)
    null = passes(event, adv("IsNullOrUndefined"), arrays=arrays)
    not_null = passes(event, adv("IsNotNull"), arrays=arrays)
    assert null != not_null
    assert null == (value is MISSING or value is None)


# [CONTRACT] "a JSON null is treated as a missing key".
@SETTINGS
@given(st.data(), st.booleans())
def test_null_is_missing(data: st.DataObject, arrays: bool) -> None:
    """Every filter answers the same on {"k": null} as on an absent k."""
    advanced = data.draw(any_advanced("data.k"))
    assert passes(event_with(None), advanced, arrays=arrays) == passes(
        event_with(MISSING), advanced, arrays=arrays
    )


# --------------------------------------------------------------------------------------
# AND across filters, OR within values
# --------------------------------------------------------------------------------------
# [DOC] "If you specify multiple different filters, an AND operation is done, so each filter
# condition must be met." "If you specify a single filter with multiple values, an OR
# operation is performed". [DOC, edge] "The NOT operators ... behave as AND conditions on each
# value given in the Values field." [CONTRACT] filters "AND'd with the event-type and subject
# parts".


@SETTINGS
@given(st.data(), maybe_missing, st.booleans())
def test_two_filters_are_and(data: st.DataObject, value: object, arrays: bool) -> None:
    """A filter with two advanced filters passes iff each alone passes."""
    first = data.draw(any_advanced("data.k"))
    second = data.draw(any_advanced(data.draw(st.sampled_from(["data.k", "data.other"]))))
    event = event_with(value)
    both = passes(event, first, second, arrays=arrays)
    assert both == (passes(event, first, arrays=arrays) and passes(event, second, arrays=arrays))


@SETTINGS
@given(st.data(), maybe_missing)
def test_advanced_and_event_type_and_subject(data: st.DataObject, value: object) -> None:
    """The event-type, subject and advanced parts are ANDed."""
    advanced = data.draw(any_advanced("data.k"))
    types = data.draw(
        st.sampled_from([["Microsoft.MachineLearningServices.X"], ["Other.Type"], ["All"]])
    )
    begins = data.draw(st.sampled_from(["", "experiments/", "models/"]))
    event = event_with(value)
    whole = passes(event, advanced, includedEventTypes=types, subjectBeginsWith=begins)
    parts = (
        passes(event, advanced)
        and passes(event, includedEventTypes=types)
        and passes(event, subjectBeginsWith=begins)
    )
    assert whole == parts


@SETTINGS
@given(st.data(), st.booleans())
def test_splitting_values_is_or_for_positive_and_for_negated(
    data: st.DataObject, arrays: bool
) -> None:
    """values = v1 + v2: positive operators OR the halves, Not operators AND them."""
    kind = data.draw(st.sampled_from(["string", "number", "range"]))
    part: st.SearchStrategy[list[Any]]
    if kind == "string":
        base = data.draw(texts)
        value: object = data.draw(st.one_of(st.just(base), st.lists(texts, max_size=3), numbers))
        part = st.lists(related_texts(base), min_size=1, max_size=3)
        positive, negated = data.draw(st.sampled_from(STRING_PAIRS))
    elif kind == "number":
        value = data.draw(st.one_of(numbers, st.lists(numbers, max_size=3), texts))
        part = st.lists(numbers, min_size=1, max_size=3)
        positive, negated = "NumberIn", "NumberNotIn"
    else:
        value = data.draw(st.one_of(numbers, st.lists(numbers, max_size=3), st.booleans()))
        part = ranges()
        positive, negated = "NumberInRange", "NumberNotInRange"
    if data.draw(st.booleans()):
        value = MISSING
    first, second = data.draw(part), data.draw(part)
    event = event_with(value)

    def run(operator: str, values: list[Any]) -> bool:
        return passes(event, adv(operator, values=values), arrays=arrays)

    assert run(positive, first + second) == (run(positive, first) or run(positive, second))
    assert run(negated, first + second) == (run(negated, first) and run(negated, second))


# --------------------------------------------------------------------------------------
# Case-insensitivity
# --------------------------------------------------------------------------------------
# [DOC] "All string comparisons aren't case-sensitive." [CONTRACT] "Key names and event
# types match case-insensitively".


@SETTINGS
@given(st.data(), st.sampled_from(POSITIVE_STRING_OPS + NEGATED_STRING_OPS))
def test_string_match_invariant_under_ascii_case(data: st.DataObject, operator: str) -> None:
    """Swapping the case of ASCII letters in the event value never changes the answer."""
    value = data.draw(texts)
    values = data.draw(st.lists(related_texts(value), min_size=1, max_size=3))
    flips = data.draw(st.lists(st.booleans(), min_size=len(value), max_size=len(value)))
    swapped = swap_ascii_case(value, flips)
    filter_ = adv(operator, values=values)
    assert passes(event_with(value), filter_) == passes(event_with(swapped), filter_)


@SETTINGS
@given(st.data(), json_values)
def test_key_lookup_invariant_under_ascii_case(data: st.DataObject, value: object) -> None:
    """Swapping the case of letters in the key name never changes the answer."""
    advanced = data.draw(any_advanced("data.k"))
    key = data.draw(st.sampled_from(["DATA.K", "Data.k", "data.K", "dAtA.k"]))
    event = event_with(value)
    assert passes(event, advanced) == passes(event, {**advanced, "key": key})


# --------------------------------------------------------------------------------------
# Arrays with the flag
# --------------------------------------------------------------------------------------
# [DOC] pseudo-code "FOR_EACH key IN (v1, v2, v3) ... MATCH / FAIL_MATCH". [CONTRACT] "with the
# flag, positive operators pass if any element matches and negated ones pass only if no
# element matches (elements of another type are ignored ...)".

non_null_scalars = st.one_of(texts, numbers, st.booleans())
POSITIVE_VALUE_OPS = frozenset(
    {
        "NumberIn",
        "NumberLessThan",
        "NumberGreaterThan",
        "NumberLessThanOrEquals",
        "NumberGreaterThanOrEquals",
        "BoolEquals",
        "StringIn",
        "StringBeginsWith",
        "StringEndsWith",
        "StringContains",
        "NumberInRange",
    }
)


@SETTINGS
@given(st.data(), st.lists(non_null_scalars, max_size=4))
def test_flagged_array_is_any_or_all_of_elements(data: st.DataObject, elements: list[Any]) -> None:
    """With the flag: positive = any element passes alone; negated = every element passes."""
    advanced = data.draw(any_advanced("data.k"))
    operator = advanced["operatorType"]
    if operator in ("IsNullOrUndefined", "IsNotNull"):
        return
    on_array = passes(event_with(elements), advanced, arrays=True)
    alone = [passes(event_with(e), advanced, arrays=True) for e in elements]
    expected = any(alone) if operator in POSITIVE_VALUE_OPS else all(alone)
    assert on_array == expected


@SETTINGS
@given(st.data(), st.one_of(non_null_scalars, st.dictionaries(small_text, scalars, max_size=2)))
def test_single_element_array_equals_scalar(data: st.DataObject, value: object) -> None:
    """With the flag, [v] answers like v for every value operator."""
    advanced = data.draw(any_advanced("data.k"))
    if advanced["operatorType"] in ("IsNullOrUndefined", "IsNotNull"):
        return
    assert passes(event_with([value]), advanced, arrays=True) == passes(
        event_with(value), advanced, arrays=True
    )


@SETTINGS
@given(st.data(), st.lists(json_values, max_size=4))
def test_unflagged_array_fails_every_value_operator(
    data: st.DataObject, elements: list[Any]
) -> None:
    """Without the flag an array key fails every value operator."""
    advanced = data.draw(any_advanced("data.k"))
    if advanced["operatorType"] in ("IsNullOrUndefined", "IsNotNull"):
        return
    assert passes(event_with(elements), advanced) is False


# --------------------------------------------------------------------------------------
# Event types
# --------------------------------------------------------------------------------------
# [DOC] "Provide an array with the event types, or specify All to get all event types".

event_types = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30
)


@SETTINGS
@given(event_types, st.lists(event_types, max_size=3))
def test_all_matches_every_event_type(event_type: str, others: list[str]) -> None:
    """Adding "All" to includedEventTypes makes every event type match; null/absent do too."""
    event = event_with("x", event_type=event_type)
    assert passes(event, includedEventTypes=[*others, "All"])
    assert passes(event, includedEventTypes=["All", *others])
    assert passes(event, includedEventTypes=None)
    assert passes(event)


@SETTINGS
@given(event_types, st.lists(event_types, min_size=1, max_size=3), st.lists(st.booleans()))
def test_event_type_list_membership(event_type: str, others: list[str], flips: list[bool]) -> None:
    """The event matches a type list iff its type is listed (ASCII case ignored)."""
    assume(all(o.upper() != "ALL" for o in others))
    event = event_with("x", event_type=event_type)
    assert passes(event, includedEventTypes=[*others, swap_ascii_case(event_type, flips)])
    listed = any(o.upper() == event_type.upper() for o in others)
    assert passes(event, includedEventTypes=others) == listed


# --------------------------------------------------------------------------------------
# Differential check against a reference model of the contract
# --------------------------------------------------------------------------------------
# A direct transcription of the documented pseudo-code, the missing-key NOTE and the contract
# lines ("no type coercion", "a JSON null is treated as a missing key", the array rules,
# ordinal ignore-case, exact decimals, subject and event-type parts), compared with the
# engine on random events and filters. Text is drawn from a small alphabet of ASCII and BMP
# letters whose case mapping is one-to-one or absent (ß), so the model's folding is exact.

MODEL_ALPHABET = "aAäÄßσςΣ.0"
model_text = st.text(alphabet=MODEL_ALPHABET, max_size=4)
model_filter_text = st.text(alphabet=MODEL_ALPHABET, min_size=1, max_size=2)
model_scalars = st.one_of(st.none(), model_text, numbers, st.booleans())
model_values = st.one_of(
    st.just(MISSING),
    model_scalars,
    st.lists(model_scalars, max_size=4),
    st.dictionaries(st.sampled_from(["k", "x"]), model_scalars, max_size=2),
)

MISSING_PASSES = frozenset({"NumberNotIn", "StringNotIn", "NumberNotInRange", "IsNullOrUndefined"})
NEGATED_OPS = frozenset(
    {
        "NumberNotIn",
        "NumberNotInRange",
        "StringNotIn",
        "StringNotBeginsWith",
        "StringNotEndsWith",
        "StringNotContains",
    }
)


def ordinal_fold(text: str) -> str:
    """Per-character simple upper-case mapping (.NET OrdinalIgnoreCase)."""
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in text)


def of_type(operator: str, value: object) -> bool:
    if operator == "BoolEquals":
        return isinstance(value, bool)
    if operator.startswith("Number"):
        return isinstance(value, int | Decimal) and not isinstance(value, bool)
    return isinstance(value, str)


def positive_test(operator: str, args: dict[str, Any], value: Any) -> bool:
    """The MATCH test of an operator (Not operators use their positive twin's test)."""
    base = operator.replace("Not", "") if operator in NEGATED_OPS else operator
    if base == "BoolEquals":
        return bool(value is args["value"])
    if base == "NumberIn":
        return any(Decimal(value) == Decimal(v) for v in args["values"])
    if base == "NumberInRange":
        return any(Decimal(lo) <= Decimal(value) <= Decimal(hi) for lo, hi in args["values"])
    if base.startswith("Number"):
        x, bound = Decimal(value), Decimal(args["value"])
        return {
            "NumberLessThan": x < bound,
            "NumberGreaterThan": x > bound,
            "NumberLessThanOrEquals": x <= bound,
            "NumberGreaterThanOrEquals": x >= bound,
        }[base]
    key = ordinal_fold(value)
    wanted = [ordinal_fold(v) for v in args["values"]]
    if base == "StringIn":
        return key in wanted
    if base == "StringBeginsWith":
        return any(key.startswith(v) for v in wanted)
    if base == "StringEndsWith":
        return any(key.endswith(v) for v in wanted)
    assert base == "StringContains", base
    return any(v in key for v in wanted)


def model_advanced(advanced: dict[str, Any], value: object, arrays: bool) -> bool:
    operator: str = advanced["operatorType"]
    if value is MISSING or value is None:
        return operator in MISSING_PASSES
    if operator in ("IsNullOrUndefined", "IsNotNull"):
        return operator == "IsNotNull"
    negated = operator in NEGATED_OPS
    if isinstance(value, list):
        if not arrays:
            return False
        hit = any(positive_test(operator, advanced, e) for e in value if of_type(operator, e))
    elif of_type(operator, value):
        hit = positive_test(operator, advanced, value)
    else:
        hit = False
    return not hit if negated else hit


def model_filter(filter_obj: dict[str, Any], value: object, event_type: str, subject: str) -> bool:
    types = filter_obj.get("includedEventTypes")
    folded_types = {ordinal_fold(t) for t in types or ()}
    if types is not None and "All" not in types and ordinal_fold(event_type) not in folded_types:
        return False
    begins = filter_obj.get("subjectBeginsWith", "")
    ends = filter_obj.get("subjectEndsWith", "")
    if not filter_obj.get("isSubjectCaseSensitive", False):
        subject, begins, ends = ordinal_fold(subject), ordinal_fold(begins), ordinal_fold(ends)
    if not (subject.startswith(begins) and subject.endswith(ends)):
        return False
    arrays = bool(filter_obj.get("enableAdvancedFilteringOnArrays", False))
    return all(model_advanced(a, value, arrays) for a in filter_obj.get("advancedFilters", []))


@st.composite
def model_related_text(draw: st.DrawFn, pool: list[str]) -> str:
    """A filter string: random, or a slice of an event string with letters' case swapped."""
    pool = [p for p in pool if p]
    if not pool or draw(st.booleans()):
        return draw(model_filter_text)
    base = draw(st.sampled_from(pool))
    i = draw(st.integers(min_value=0, max_value=len(base) - 1))
    j = draw(st.integers(min_value=i + 1, max_value=len(base)))
    flips = draw(st.lists(st.booleans(), min_size=j - i, max_size=j - i))
    return "".join(c.swapcase() if f else c for c, f in zip(base[i:j], flips, strict=True))


@st.composite
def model_advanced_filters(draw: st.DrawFn, pool: list[str]) -> dict[str, Any]:
    advanced = draw(any_advanced("data.k"))
    if advanced["operatorType"].startswith("String"):
        texts = st.lists(model_related_text(pool), min_size=1, max_size=3)
        advanced["values"] = draw(texts)
    return advanced


@settings(max_examples=400, deadline=None)
@given(st.data(), model_values, st.booleans())
def test_engine_agrees_with_reference_model(
    data: st.DataObject, value: object, arrays: bool
) -> None:
    """On random events and filters the engine answers like the contract's reference model."""
    pool = [value] if isinstance(value, str) else []
    pool += [e for e in value if isinstance(e, str)] if isinstance(value, list) else []
    advanced = data.draw(st.lists(model_advanced_filters(pool), max_size=3))
    event_type = data.draw(st.sampled_from(["A.B.RunCompleted", "a.b.runcompleted", "X.Y"]))
    subject = data.draw(st.text(alphabet=MODEL_ALPHABET, max_size=4))
    filter_obj: dict[str, Any] = {"advancedFilters": advanced}
    if arrays:
        filter_obj["enableAdvancedFilteringOnArrays"] = True
    types = data.draw(
        st.sampled_from([None, ["All"], ["A.B.RUNCOMPLETED"], ["X.Y", "Other"], "absent"])
    )
    if types != "absent":
        filter_obj["includedEventTypes"] = types
    if data.draw(st.booleans()):
        filter_obj["subjectBeginsWith"] = data.draw(st.text(alphabet=MODEL_ALPHABET, max_size=2))
    if data.draw(st.booleans()):
        filter_obj["subjectEndsWith"] = data.draw(st.text(alphabet=MODEL_ALPHABET, max_size=2))
    if data.draw(st.booleans()):
        filter_obj["isSubjectCaseSensitive"] = data.draw(st.booleans())
    event = {
        "id": "id-1",
        "eventType": event_type,
        "subject": subject,
        "data": {} if value is MISSING else {"k": value},
    }
    (ev,) = decode_body(to_json([event]).encode("utf-8"))
    compiled = compile_filter(filter_obj)
    expected = model_filter(filter_obj, value, event_type, subject)
    assert compiled.matches(ev) is expected
    assert compiled.explain(ev).matched is expected
