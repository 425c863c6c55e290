"""The json serializer calls the C encoder and scanner directly: same text as json.dumps, same errors."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyroplug.core import errors
from pyroplug.core.config import Config
from pyroplug.plugins.serializers.json import JsonSerializer

SER = JsonSerializer(Config())
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(values)
def test_the_same_text_as_json_dumps(value: Any) -> None:
    expected = json.dumps(value, ensure_ascii=False).encode("utf-8")
    assert SER.dumps(value) == expected
    decoded = SER.loads(expected)
    assert json.dumps(decoded) == json.dumps(json.loads(expected))


def test_conversions_still_apply() -> None:
    key = uuid.uuid4()
    assert SER.loads(SER.dumps({"id": key, "s": {1}})) == {"id": str(key), "s": [1]}


def test_a_cycle_is_a_serialize_error() -> None:
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(errors.SerializeError):
        SER.dumps(cycle)
    assert SER.dumps([1]) == b"[1]"  # and the serializer still works


@pytest.mark.parametrize("text", [b' {"a": 1}', b'{"a": 1} ', b"\n[1]\n"])
def test_surrounding_whitespace_is_fine(text: bytes) -> None:
    assert SER.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", [b"", b"{", b'{"a": 1} x', b"[1]]", b"nul"])
def test_bad_text_is_a_serialize_error(text: bytes) -> None:
    with pytest.raises(errors.SerializeError):
        SER.loads(text)
