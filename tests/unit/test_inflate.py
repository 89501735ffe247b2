"""Bounded inflation: one spelling per credential, and no bomb inflates past its limit."""

from __future__ import annotations

import zlib

import pytest

from codeengine.code.errors import MalformedCode
from codeengine.code.inflate import inflate_bounded

ZLIB = zlib.MAX_WBITS
RAW = -zlib.MAX_WBITS


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=RAW)
    return compressor.compress(data) + compressor.flush()


def test_a_stream_within_the_limit_inflates_to_its_bytes() -> None:
    assert inflate_bounded(zlib.compress(b"abc" * 100), ZLIB, 300, "x") == b"abc" * 100
    assert inflate_bounded(_raw_deflate(b"abc" * 100), RAW, 300, "x") == b"abc" * 100


@pytest.mark.parametrize(
    ("data", "wbits", "why"),
    [
        (zlib.compress(b"\0" * 10_000_000), ZLIB, "inflates beyond the size limit"),
        (zlib.compress(b"abc")[:-3], ZLIB, "is truncated or followed by other bytes"),
        (zlib.compress(b"abc") + b"\0", ZLIB, "is truncated or followed by other bytes"),
        (b"not compressed", ZLIB, "is not a valid compressed stream"),
        (zlib.compress(b"abc"), RAW, "is not a valid compressed stream"),
        (_raw_deflate(b"abc"), ZLIB, "is not a valid compressed stream"),
    ],
    ids=["bomb", "truncated", "trailing", "not-compressed", "zlib-as-raw", "raw-as-zlib"],
)
def test_anything_else_is_malformed_naming_what(data: bytes, wbits: int, why: str) -> None:
    with pytest.raises(MalformedCode, match=f"^the stream {why}"):
        inflate_bounded(data, wbits, 1_000, "the stream")
