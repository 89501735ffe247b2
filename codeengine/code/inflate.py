"""Bounded decompression of scanned credentials (an EU DCC's zlib, a SMART Health Card's DEFLATE).

A scanned text is an attacker's input: a few hundred bytes may claim to inflate to gigabytes.
The stream is inflated to at most ``limit`` bytes, and it must end exactly where the data ends,
so that one credential has one spelling. Pure.
"""

from __future__ import annotations

__all__ = ["inflate_bounded"]

import zlib

from codeengine.code.errors import MalformedCode


def inflate_bounded(data: bytes, wbits: int, limit: int, what: str) -> bytes:
    """``data`` inflated (``wbits`` as zlib takes it: 15 for zlib, -15 for raw DEFLATE);
    MalformedCode, naming ``what``, if it is not such a stream, inflates beyond ``limit``
    bytes, or is truncated or followed by other bytes."""
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise MalformedCode(f"{what} is not a valid compressed stream") from None
    if len(out) > limit:
        raise MalformedCode(f"{what} inflates beyond the size limit")
    if not inflater.eof or inflater.unused_data:
        raise MalformedCode(f"{what} is truncated or followed by other bytes")
    return out
