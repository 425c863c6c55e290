"""The serpent fast path (serpent_text): the same bytes as serpent.dumps, the same values as serpent.loads."""

from __future__ import annotations

import ast
import math
from typing import Any

import pytest
import serpent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyroplug.core import errors
from pyroplug.core.config import Config
from pyroplug.plugins.serializers import serpent_text
from pyroplug.plugins.serializers.serpent import SerpentSerializer
from pyroplug.plugins.serializers.serpent_text import UNPARSED, decode, decode_call, encode, encode_call

H = b"# serpent utf-8 python3.2\n"


class IntSub(int):
    pass


class StrSub(str):
    pass


class FloatSub(float):
    pass


def dumps(value: Any) -> bytes:
    return serpent.dumps(value, indent=False, module_in_classname=True)  # type: ignore[no-any-return]


def strict_equal(a: Any, b: Any) -> bool:
    """Equal with exact types at every level; NaN equals NaN and -0.0 differs from 0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return math.isnan(a) and math.isnan(b) or repr(a) == repr(b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return list(a) == list(b) and all(strict_equal(a[k], b[k]) for k in a)
    if type(a) in (set, frozenset):
        return a == b
    return a == b  # type: ignore[no-any-return]


tricky_text = st.lists(st.sampled_from(
    list("ab '\"\\,:()[]{}#\n\r\t\x00\x7f\x85é€") + ["\ud800", "\U0001f600", "\u2028", "None", "1e5", "\\x41"]),
    max_size=8).map("".join)
texts = st.one_of(st.text(), tricky_text, st.sampled_from(["", "'", '"', "it's", 'say "hi"', "both ' and \"", "\\"]))
floats = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1e16, 1e-7, 0.1, 1e300]))
ints = st.one_of(st.integers(), st.integers(min_value=-(10**40), max_value=10**40), st.sampled_from([0, -1, 2**63]))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts,
                    ints.map(IntSub), texts.map(StrSub), st.floats(allow_nan=False).map(FloatSub))
keys = st.one_of(texts, ints, st.booleans(), st.floats(allow_nan=False), st.none())
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        children.map(lambda v: (v,)),
        st.dictionaries(keys, children, max_size=4),
        st.frozensets(st.one_of(ints, texts), max_size=3).map(set),
    ),
    max_leaves=12,
)


def plain(value: Any) -> bool:
    """Whether the fast path must accept ``value`` (only plain literal types, str/int/float/bool keys)."""
    t = type(value)
    if t in (str, int, float, bool, type(None)):
        return True
    if t in (list, tuple):
        return all(plain(v) for v in value)
    if t is dict:
        return all(type(k) in (str, int, float, bool) and plain(v) for k, v in value.items())
    return False


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_encode_is_serpents_bytes(value: Any) -> None:
    fast = encode(value)
    try:
        expected = dumps(value)
    except Exception:
        assert fast is None  # serpent refuses it (None keys ...): the fast path must not accept it
        return
    if fast is not None:
        assert fast == expected
    if plain(value):
        assert fast is not None
    assert SerpentSerializer(Config()).dumps(value) == expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(texts, texts, values, st.one_of(st.none(), st.dictionaries(texts, values, max_size=3)))
def test_encode_call_is_serpents_bytes(obj: str, method: str, vargs: Any, kwargs: Any) -> None:
    fast = encode_call(obj, method, vargs, kwargs)
    try:
        expected = dumps((obj, method, vargs, kwargs))
    except Exception:
        assert fast is None
        return
    if fast is not None:
        assert fast == expected
    assert SerpentSerializer(Config()).dumps_call(obj, method, vargs, kwargs) == expected


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_decode_is_serpents_value(value: Any) -> None:
    try:
        data = dumps(value)
        expected = serpent.loads(data)
    except Exception:
        return
    for got in (decode(data), decode_call(data)):
        assert got is UNPARSED or strict_equal(got, expected), (data, got, expected)
    if plain(value) and not (type(value) is dict and any(type(k) is not str for k in value)):
        assert decode(data) is not UNPARSED or b"\\" in data or b'"' in data or b" " in data, data


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(texts, texts, st.lists(scalars, max_size=4).map(tuple),
       st.one_of(st.none(), st.dictionaries(texts, scalars, max_size=3)))
def test_decode_call_is_serpents_value(obj: str, method: str, vargs: Any, kwargs: Any) -> None:
    data = dumps((obj, method, vargs, kwargs))
    try:
        expected = serpent.loads(data)
    except Exception:
        return
    got = decode_call(data)
    assert got is UNPARSED or strict_equal(got, expected), (data, got, expected)


FRAGMENTS = ["(", ")", "[", "]", "{", "}", ",", ":", " ", "'a'", '"b"', "''", "'it\\'s'", "'\\x41'", "'\\N{DASH}'",
             "1", "0", "-", "-1", "1.5", "1e5", "1e30000", ".", "e", "j", "_", "01", "None", "True", "False", "none",
             "NaN", "Infinity", "\n", "\t", "#", "'\\u0041'", "'\\U0010ffff'", "'\\U00110000'", "\\", "'a\\'", "\x01",
             "'\x00'", "+", "**", "b'x'", "1" * 5000]


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=14), st.booleans())
def test_decode_never_guesses(fragments: list[str], header: bool) -> None:
    """Near-misses of the subset: whatever the fast path accepts, ast.literal_eval reads the same way."""
    text = "".join(fragments)
    data = (H.decode() if header else "") + text
    for got in (decode(data.encode()), decode_call(data.encode())):
        if got is UNPARSED:
            continue
        expected = ast.literal_eval(text)
        assert strict_equal(got, expected), (text, got, expected)


@pytest.mark.parametrize("text, expected", [
    ("(1)", 1), ("((1,2))", (1, 2)), ("()", ()), ("(1,)", (1,)), ("(1,2,)", (1, 2)), ("[1,]", [1]),
    ("{}", {}), ("{1,2}", {1, 2}), ("{1:2,}", {1: 2}), ("{'a':1,'a':2}", {"a": 2}), ("-0.0", -0.0),
    ("-0", 0), ("1e30000", math.inf), ("-1e30000", -math.inf), ("'it\\'s'", "it's"), ('"it\'s"', "it's"),
    ("'\\x41\\u00e9\\U0001f600\\n'", "A\u00e9\U0001f600\n"), ("{'data': 'YWI=', 'encoding': 'base64'}",
                                                                  {"data": "YWI=", "encoding": "base64"}),
    ("('o','m',(1,),None)", ("o", "m", (1,), None)), ("[(),[()],{'a':(1,[2])}]", [(), [()], {"a": (1, [2])}]),
])
def test_decode_examples(text: str, expected: Any) -> None:
    for data in (text.encode(), H + text.encode()):
        got = decode(data)
        assert strict_equal(got, expected), (text, got)
        assert strict_equal(got, serpent.loads(data))


@pytest.mark.parametrize("text", [
    "(1,2]", "[1)", "[1,2)", "(1]", "{1:2,3}", "{1,2:3}", "{1:}", "01", "1_0", "- 1", "'a' 'b'", "1,2", "1 2",
    "'\\N{DASH}'", "'\\q'", "'\\U00110000'", "1" * 5000, "[1]]", "[[1]", "{[1]}", "{[1]:2}", "NaN", "[Infinity]",
    "'a\x00'", "b'x'", "1j", "1+2j", "# other comment\n1", "(\n1)", "1.", ".5", "None.x", "--1", "",
    "[" * 100 + "]" * 100,
])
def test_decode_leaves_the_rest_to_serpent(text: str) -> None:
    for data in (text.encode(), H + text.encode()):
        assert decode(data) is UNPARSED, text
        assert decode_call(data) is UNPARSED, text


def test_encode_limits() -> None:
    deep: list = []
    for _ in range(serpent_text.MAX_DEPTH + 5):
        deep = [deep]
    assert encode(deep) is None
    assert SerpentSerializer(Config()).dumps(deep) == dumps(deep)
    circular: list = []
    circular.append(circular)
    assert encode(circular) is None
    with pytest.raises(errors.SerializeError):
        SerpentSerializer(Config()).dumps(circular)
    assert encode(10**5000) is None  # repr() refuses it: serpent's error decides
    assert encode({None: 1}) is None and encode({(1,): 1}) is None
    assert encode(b"x") is None and encode({1, 2}) is None


def test_serializer_uses_fast_path_results_unchanged() -> None:
    ser = SerpentSerializer(Config())
    call = ("obj_1", "compute", (42, "hello", 3.5, None, True, -1), {"scale": 2})
    data = ser.dumps_call(*call)
    assert data == dumps(call)
    assert strict_equal(ser.loads_call(data), call)
    assert strict_equal(ser.loads(ser.dumps({"status": "ok", "values": [1, 2, 3]})), {"status": "ok", "values": [1, 2, 3]})
    nan = ser.loads(ser.dumps([math.nan]))
    assert math.isnan(nan[0])
    with pytest.raises(errors.SerializeError):
        ser.loads_call(H + b"('o','m',(1),{})")  # "(1)" is not a tuple: check_call refuses it


def test_escape_dense_large_text_is_left_to_serpent() -> None:
    """Binary-like strings (mostly escapes) decode through serpent's own tokenizer, equal either way."""
    value = "\0\x01\\'" * 5000
    data = serpent.dumps(value, module_in_classname=True)
    assert serpent_text.decode(data) is serpent_text.UNPARSED
    assert serpent_text._unescape_all("a\\x00\\u20ac\\U0001f600\\\\\\'") == "a\0€😀\\'"
    small = serpent.dumps("\0\\'" * 10, module_in_classname=True)
    assert serpent_text.decode(small) == "\0\\'" * 10
