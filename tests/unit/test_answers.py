"""Hand-written JSON answers read back as the generic encoder's would."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codeengine.code.base45 import ALPHABET
from codeengine.code.errors import Reason
from codeengine.code.model import CodeKind, Colour
from codeengine.code.verification import Verdict
from codeengine.web.answers import JSON_CONTENT_TYPE, json_answer, json_str, json_text
from verifier.verify import _ANSWERS, MAX_KEPT_ANSWERS, full_answer


@given(st.text())
def test_any_text_reads_back_as_itself(text: str) -> None:
    assert json.loads(json_str(text)) == text


@given(st.text(alphabet=ALPHABET + ":", min_size=1))
def test_token_text_is_quoted_as_is(token: str) -> None:
    assert json_str(token) == f'"{token}"'


def test_quotes_backslashes_controls_and_non_ascii_are_escaped() -> None:
    for text in ('say "hi"', "back\\slash", "line\nbreak", "tab\t", "绿码", "\x7f"):
        assert json_str(text) == json.dumps(text)


def test_an_answer_carries_the_json_content_type_and_its_cache_control() -> None:
    answer = json_answer('{"a":1}', status=201, cache_control="private, max-age=5")
    assert answer.status == 201
    assert answer.body == b'{"a":1}'
    assert answer.headers["Content-Type"] == JSON_CONTENT_TYPE
    assert answer.headers["Cache-Control"] == "private, max-age=5"
    assert "Cache-Control" not in json_answer("{}").headers, "headers are not shared"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(JSON_VALUES)
def test_json_text_is_what_json_dumps_writes(document: object) -> None:
    assert json_text(document) == json.dumps(document, separators=(",", ":"))


def test_json_text_refuses_what_json_cannot_write() -> None:
    with pytest.raises(TypeError, match="bytes"):
        json_text({"raw": b"\x00"})


_VERDICT_FIELDS = {
    "valid": st.booleans(),
    "reason": st.sampled_from([r.value for r in Reason]) | st.text(),
    "checked_at": st.integers(min_value=0, max_value=2**63),
    "colour": st.none() | st.sampled_from(Colour),
    "kind": st.none() | st.sampled_from(CodeKind),
    "city": st.none() | st.integers(min_value=0, max_value=999_999),
    "as_of": st.none() | st.integers(min_value=0, max_value=2**63),
    "degraded": st.booleans(),
    "subject_raw": st.none() | st.binary(min_size=12, max_size=12),
}
VERDICTS = st.builds(Verdict, **_VERDICT_FIELDS)


@given(VERDICTS)
def test_the_full_verify_answer_is_what_the_encoder_writes(verdict: Verdict) -> None:
    assert full_answer(verdict) == json_text(verdict.to_json())
    # Asked again (kept now), and for another subject: the same text.
    assert full_answer(verdict) == json_text(verdict.to_json())
    assert full_answer(verdict._replace(subject_raw=b"\x07" * 12)) == full_answer(verdict)


@given(VERDICTS, st.sampled_from(list(range(8))), st.data())
def test_a_kept_verify_answer_is_not_given_for_a_verdict_that_differs(
    verdict: Verdict, field: int, data: st.DataObject
) -> None:
    full_answer(verdict)
    name = Verdict._fields[field]
    changed: dict[str, Any] = {name: data.draw(_VERDICT_FIELDS[name])}
    other = verdict._replace(**changed)
    assert full_answer(other) == json_text(other.to_json())


def test_the_kept_verify_answers_stay_within_their_bound() -> None:
    first = Verdict(True, "VALID", 1_800_000_000, Colour.GREEN, CodeKind.HEALTH, 320100,
                    1_800_000_000)  # fmt: skip
    for second in range(MAX_KEPT_ANSWERS + 10):
        at = 1_800_000_000 + second
        full_answer(first._replace(checked_at=at, as_of=at))
    assert 0 < len(_ANSWERS) <= MAX_KEPT_ANSWERS
