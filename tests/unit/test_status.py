"""A subject record as stored: read whole, or only its colour (what verify reads)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.errors import CodeEngineError
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.status import SubjectRecord, colour_in_record_at

NOW = 1_800_000_000
_COLOUR = st.sampled_from(list(Colour))
_INSTANT = st.integers(min_value=NOW - 100, max_value=NOW + 100)


@settings(max_examples=400, deadline=None)
@given(
    colour=_COLOUR,
    risk=st.lists(st.tuples(_COLOUR, _INSTANT), max_size=4).map(tuple),
    override=st.none() | st.tuples(_COLOUR, _INSTANT),
    head=st.sampled_from(["", "ab" * 16]),
    fences=st.lists(st.tuples(st.sampled_from(["320100", "320200"]), st.integers(0, 9)),
                    max_size=2, unique_by=lambda f: f[0]).map(lambda f: tuple(sorted(f))),
    late=st.integers(min_value=-120, max_value=120),
)  # fmt: skip
def test_the_colour_read_alone_is_the_colour_of_the_whole_record(
    colour: Colour,
    risk: tuple[tuple[Colour, int], ...],
    override: tuple[Colour, int] | None,
    head: str,
    fences: tuple[tuple[str, int], ...],
    late: int,
) -> None:
    record = SubjectRecord(SubjectId("HgXav1HL4BkVDqsJ"), CodeKind.HEALTH, 320100, colour, 3,
                           NOW - 50, risk, override, head, 2, fences, "")  # fmt: skip
    body = record.pack()
    assert SubjectRecord.unpack(record.subject, body) == record
    assert colour_in_record_at(body, NOW + late) == record.colour_at(NOW + late)


_STORED = {"k": 1, "c": 320100, "col": 1, "v": 1, "u": NOW}


@pytest.mark.parametrize(
    "changed",
    [
        {"col": None},  # no colour
        {"col": 9},  # not a colour
        {"r": [3]},  # a risk period cut short
        {"o": ["red", NOW]},  # an override's colour as text
    ],
)
def test_a_record_whose_colour_cannot_be_read_is_refused_as_corrupt(
    changed: dict[str, object],
) -> None:
    fields = {k: v for k, v in {**_STORED, **changed}.items() if v is not None}
    body = msgpack.packb(fields)
    with pytest.raises(CodeEngineError):
        colour_in_record_at(body, NOW)
    with pytest.raises(CodeEngineError):
        SubjectRecord.unpack(SubjectId("HgXav1HL4BkVDqsJ"), body)


def test_a_value_that_is_not_msgpack_is_refused_as_corrupt() -> None:
    with pytest.raises(CodeEngineError):
        colour_in_record_at(b"\xc1", NOW)
