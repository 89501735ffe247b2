"""Request bodies and credentials are validated at the boundary with stable reasons."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.errors import (
    AccessDenied,
    BadRequest,
    KeyringError,
    NotAuthenticated,
    RateLimited,
)
from codeengine.web.auth import Client, Credentials, load_credentials
from codeengine.web.body import Field, _check, _parsed, loads, validate_object

FIELDS = {"name": Field(str, max_length=4), "n": Field(int, minimum=1, maximum=9)}
FIELDS_OPTIONAL = {**FIELDS, "tag": Field(str, required=False)}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([], "INVALID_FIELD"),
        ({"name": "a", "n": 1, "x": 1}, "UNKNOWN_FIELD"),
        ({"name": "a"}, "MISSING_FIELD"),
        ({"name": 1, "n": 1}, "INVALID_FIELD"),
        ({"name": "abcde", "n": 1}, "INVALID_FIELD"),
        ({"name": "a", "n": True}, "INVALID_FIELD"),
        ({"name": "a", "n": 0}, "INVALID_FIELD"),
        ({"name": "a", "n": 10}, "INVALID_FIELD"),
        ({"name": "a", "n": 1.5}, "INVALID_FIELD"),
    ],
    ids=["array", "unknown", "missing", "type", "long", "bool", "low", "high", "float"],
)
def test_body_refusals(document: Any, reason: str) -> None:
    with pytest.raises(BadRequest) as refused:
        validate_object(document, FIELDS_OPTIONAL)
    assert refused.value.reason == reason


def test_body_accepts_exact_fields() -> None:
    assert validate_object({"name": "ab", "n": 3}, FIELDS_OPTIONAL) == {"name": "ab", "n": 3}


def test_whole_number_floats_are_integers_as_in_json_schema() -> None:
    checked = validate_object({"name": "ab", "n": 3.0}, FIELDS)
    assert checked["n"] == 3 and type(checked["n"]) is int
    with pytest.raises(BadRequest):
        validate_object({"name": "ab", "n": 3.5}, FIELDS)


@given(
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=10),
    st.integers(0, 8),
    st.booleans(),
)
def test_text_fields_take_exactly_what_the_general_check_takes(
    text: str, limit: int, printable: bool
) -> None:
    # validate_object has a shortcut for ASCII text fields bounded by length alone.
    spec = Field(str, max_length=limit, printable=printable)
    assert spec.plain_text

    def outcome(check: Any) -> tuple[str, Any]:
        try:
            return "taken", check()
        except BadRequest as exc:
            return "refused", (exc.detail, exc.reason)

    assert outcome(lambda: validate_object({"s": text}, {"s": spec})["s"]) == outcome(
        lambda: _check("s", spec, text)
    )


def test_only_text_bounded_by_length_alone_takes_the_shortcut() -> None:
    assert Field(str, max_length=4).plain_text
    for spec in (
        Field(str),
        Field(str, max_length=4, min_length=1),
        Field(str, max_length=4, minimum=1),
        Field(str, max_length=4, maximum=1),
        Field(int, max_length=4),
    ):
        assert not spec.plain_text, spec


@pytest.mark.parametrize("text", ["T-1\n", "\x00", "a\tb", "\x7f", "柜台\u2028"])
def test_printable_fields_refuse_control_characters(text: str) -> None:
    fields = {"terminal": Field(str, max_length=64, printable=True)}
    with pytest.raises(BadRequest, match="printable") as refused:
        validate_object({"terminal": text}, fields)
    assert refused.value.reason == "INVALID_FIELD"
    # Without the flag the same text is taken as it is.
    assert validate_object({"terminal": text}, {"terminal": Field(str, max_length=64)})


def test_printable_fields_take_printable_text_in_any_script() -> None:
    fields = {"venue": Field(str, max_length=64, printable=True)}
    for text in ("V-1", "南京南站 2号口", ""):
        assert validate_object({"venue": text}, fields) == {"venue": text}


def test_min_length() -> None:
    fields = {"op": Field(str, min_length=1)}
    assert validate_object({"op": "x"}, fields) == {"op": "x"}
    with pytest.raises(BadRequest, match="shorter"):
        validate_object({"op": ""}, fields)


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(document))
    return path


def test_credentials_by_key_or_hash_with_scopes_and_rate(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"prod-key").hexdigest()
    path = write(
        tmp_path,
        {
            "clients": [
                {"client": "app", "scopes": ["display"], "key": "dev-key"},
                {"client": "ops", "scopes": ["convert"], "key_sha256": digest, "rate_per_s": 1},
            ]
        },
    )
    credentials = load_credentials(path)
    assert credentials.authenticate("Bearer dev-key") == Client("app", frozenset({"display"}), 5000)
    ops = credentials.authenticate("Bearer prod-key")
    assert ops.scopes == {"convert"}
    for header in (None, "", "Basic x", "Bearer wrong", "Bearer " + "k" * 300):
        with pytest.raises(NotAuthenticated):
            credentials.authenticate(header)
    credentials.admit_at(ops, 0.0)
    with pytest.raises(RateLimited) as limited:
        credentials.admit_at(ops, 0.1)
    assert limited.value.retry_after_s == 1
    assert AccessDenied.reason == "FORBIDDEN"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({}, "clients"),
        ({"clients": [1]}, r"clients\[0\] must be an object"),
        ({"clients": [{"client": "a", "scopes": ["root"], "key": "k"}]}, "scopes"),
        ({"clients": [{"client": "a", "scopes": ["display"]}]}, "key or key_sha256"),
        ({"clients": [{"client": "a", "scopes": ["display"], "key_sha256": "zz"}]}, "not hex"),
        ({"clients": [{"client": "", "scopes": ["display"], "key": "k"}]}, "client"),
        (
            {"clients": [{"client": "a", "scopes": ["display"], "key": "k", "rate_per_s": 0}]},
            "rate_per_s",
        ),
    ],
    ids=["no-clients", "not-object", "bad-scope", "no-key", "bad-hash", "no-name", "bad-rate"],
)
def test_bad_credentials_fail_naming_the_entry(tmp_path: Path, document: Any, problem: str) -> None:
    with pytest.raises(KeyringError, match=problem):
        load_credentials(write(tmp_path, document))


def test_rate_share_splits_a_client_rate_across_workers() -> None:
    client = Client("c", frozenset({"display"}), rate_per_s=4)
    credentials = Credentials({}, rate_share=0.5)
    credentials.admit_at(client, 0.0)
    credentials.admit_at(client, 0.0)
    with pytest.raises(RateLimited):
        credentials.admit_at(client, 0.0)


def _outcome(parse: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", parse(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        return "error", type(exc).__name__


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
ODD_BODIES = [
    b"",
    b"{",
    b'{"a": 1} ',
    b'{"a": 1}\n',
    b'{"a": 1}{}',
    b'{"a": 1}x',
    b"\xef\xbb\xbf{}",  # UTF-8 BOM: json.loads accepts it from bytes
    '{"a": 1}'.encode("utf-16-le"),
    '{"a": 1}'.encode("utf-32"),
    b'{"a": "\\ud800"}',
    b'{"a": "\xff"}',
    b'{"a": NaN}',
    b"{" * 5000 + b"}" * 5000,
    b" {}",
    b"[1]",
]


@pytest.mark.parametrize("raw", ODD_BODIES)
def test_loads_is_json_loads_on_odd_bodies(raw: bytes) -> None:
    assert _outcome(loads, raw) == _outcome(json.loads, raw)


@settings(max_examples=300, deadline=None, database=None)
@given(value=JSON_VALUES, ascii_only=st.booleans(), tail=st.sampled_from([b"", b" ", b"x", b"{}"]))
def test_loads_is_json_loads(value: Any, ascii_only: bool, tail: bytes) -> None:
    raw = json.dumps({"v": value}, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass") + tail
    expected, got = _outcome(json.loads, raw), _outcome(loads, raw)
    # NaN is not equal to itself: compare the text of what both parsed.
    assert repr(got) == repr(expected)


# The typed body of a verify (TypedBody): msgspec's decoder and the general check, one outcome.

_CITY = 320100
_SCAN_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["CE1:ABC", "T-1", "", "a" * 64, "a" * 65, "a\n", "南京", "x" * 403]),
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=8),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([_CITY, float(_CITY), 320100.5, True, False, None, [], {}]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _typed_and_general(raw: bytes) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """How the verify body's typed decoder and the general check each read ``raw``."""
    from verifier.verify import ITEM, ITEM_FIELDS, ScanItem

    def outcome(read: Any) -> tuple[str, Any]:
        try:
            return "taken", read()
        except BadRequest as exc:
            return "refused", (exc.detail, exc.reason)

    return outcome(lambda: ITEM.decode(raw)), outcome(
        lambda: ScanItem(**validate_object(_parsed(raw), ITEM_FIELDS))
    )


def _body(pairs: list[tuple[str, Any]], ascii_only: bool, tail: str) -> bytes:
    # Written by hand: a key may repeat, as JSON allows and json.loads takes the last.
    members = ",".join(
        f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=ascii_only)}" for k, v in pairs
    )
    return ("{" + members + "}" + tail).encode("utf-8", "surrogatepass")


@given(
    st.lists(
        st.tuples(st.sampled_from(["code", "terminal", "venue", "city", "other"]), _SCAN_VALUES),
        max_size=6,
    ),
    st.booleans(),
    st.sampled_from(["", " ", "\n", "x", "}"]),
    st.booleans(),
)
@settings(max_examples=600, deadline=None)
def test_a_typed_body_is_taken_or_refused_as_the_general_check_does(
    pairs: list[tuple[str, Any]], ascii_only: bool, tail: str, from_valid: bool
) -> None:
    # From a valid scan, the drawn members add to it or (a repeated key) replace its own.
    valid = [("code", "CE1:ABC"), ("terminal", "T-1"), ("city", _CITY)]
    typed, general = _typed_and_general(
        _body((valid if from_valid else []) + pairs, ascii_only, tail)
    )
    assert typed == general


_RAW_PIECES = [
    b"\x00", b"\x01", b"\x7f", b"\\", b'"', b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf",
    b" ", b"\t", b"\n", b",", b"}", b"{", b"[", b"0", b"1", b"-", b"+", b"e", b"E", b".", b"\\u",
    b"\\ud800", b"\\u0063", b"null", b"NaN", b"9" * 30,
]  # fmt: skip


@given(
    st.lists(
        st.tuples(st.integers(0, 200), st.integers(0, 3), st.sampled_from(_RAW_PIECES)),
        min_size=1,
        max_size=4,
    )
)
@settings(max_examples=600, deadline=None)
def test_a_typed_body_with_bytes_changed_is_read_as_the_general_check_reads_it(
    edits: list[tuple[int, int, bytes]],
) -> None:
    # Bytes json.dumps never writes: control and invalid UTF-8 bytes, odd numbers, escapes.
    raw = bytearray(b'{"code": "CE1:ABC", "terminal": "T-1", "venue": "V", "city": 320100}')
    for at, removed, piece in edits:
        at %= len(raw) + 1
        raw[at : at + removed] = piece
    typed, general = _typed_and_general(bytes(raw))
    assert typed == general


def test_a_typed_body_declares_its_fields_as_the_general_check_has_them() -> None:
    import msgspec.inspect

    from verifier.verify import ITEM

    info = msgspec.inspect.type_info(ITEM.struct)
    assert isinstance(info, msgspec.inspect.StructType)
    assert info.forbid_unknown_fields
    kinds: dict[type, type[msgspec.inspect.Type]] = {
        str: msgspec.inspect.StrType,
        int: msgspec.inspect.IntType,
    }
    assert {f.name for f in info.fields} == set(ITEM.fields)
    for declared in info.fields:
        spec = ITEM.fields[declared.name]
        assert isinstance(declared.type, kinds[spec.kind]), declared.name
        assert declared.required == spec.required, declared.name
        assert getattr(declared.type, "max_length", None) == spec.max_length, declared.name
        # Bounds msgspec would check are the general check's alone (it has no printable rule).
        assert spec.min_length is None and spec.minimum is None and spec.maximum is None
