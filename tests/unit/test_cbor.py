"""The general CBOR decoder against cbor2 (the oracle), and its refusals."""

from __future__ import annotations

import math

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codeengine.code.cbor import MAX_DEPTH, Tag, loads
from codeengine.code.errors import MalformedCode

_KEYS = st.one_of(st.integers(-(2**64), 2**64 - 1), st.text(max_size=8), st.binary(max_size=8))
_LEAVES = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)
_ITEMS = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=4)
    ),
    max_leaves=20,
)


@given(_ITEMS)
def test_what_cbor2_writes_reads_back_the_same(value: object) -> None:
    assert loads(cbor2.dumps(value)) == value


@given(_ITEMS, st.booleans())
def test_floats_of_every_width_read_back(value: object, canonical: bool) -> None:
    assert loads(cbor2.dumps(value, canonical=canonical)) == value


def test_indefinite_lengths_and_tags_read_as_written() -> None:
    # {_ "ver": "1.0.0", "nam": {_ }} with an indefinite text and array, as a DCC may carry.
    data = bytes.fromhex("bf63766572653" + "12e302e30636e616dbfffff")
    assert loads(data) == {"ver": "1.0.0", "nam": {}}
    assert loads(bytes.fromhex("7f626869627468ff")) == "hith"
    assert loads(bytes.fromhex("9f0102ff")) == [1, 2]
    assert loads(bytes.fromhex("d83d" + "d2" + "80")) == Tag(61, Tag(18, []))
    assert math.isinf(loads(bytes.fromhex("f97c00")))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hexdata", "why"),
    [
        pytest.param("", "truncated", id="empty"),
        pytest.param("5820aa", "truncated", id="short-bytes"),
        pytest.param("0101", "trailing", id="trailing"),
        pytest.param("ff", "break", id="lone-break"),
        pytest.param("81ff", "break outside", id="break-in-array"),
        pytest.param("1c", "reserved", id="reserved-info"),
        pytest.param("a2010203", "truncated", id="map-short"),
        pytest.param("a2010101", "twice", id="duplicate-key"),
        pytest.param("a1f401", "map key", id="bool-key"),
        pytest.param("62c328", "UTF-8", id="bad-utf8"),
        pytest.param("1f", "indefinite", id="indefinite-int"),
        pytest.param("5f6161ff", "chunk", id="text-in-bytes"),
        pytest.param("f820", "unassigned", id="one-byte-simple"),
        pytest.param("f0", "unassigned", id="unassigned-simple"),
    ],
)
def test_malformed_cbor_is_refused(hexdata: str, why: str) -> None:
    with pytest.raises(MalformedCode, match=why):
        loads(bytes.fromhex(hexdata))


def test_nesting_beyond_the_limit_is_refused_not_a_recursion_error() -> None:
    assert loads(b"\x81" * MAX_DEPTH + b"\x00") is not None
    with pytest.raises(MalformedCode, match="deep"):
        loads(b"\x81" * (MAX_DEPTH + 1) + b"\x00")
    with pytest.raises(MalformedCode, match="deep"):
        loads(b"\x81" * 100_000 + b"\x00")
