"""A general CBOR decoder (RFC 8949) for credentials other issuers sign: the EU DCC.

The engine's own codes have one canonical layout that ``token`` reads at fixed offsets; a DCC is
whatever CBOR its issuing country's library wrote (indefinite-length maps, half floats, tags),
so it needs a decoder that reads every well-formed item. It accepts any well-formed encoding
(a DCC's signature covers the bytes as they are, so there is no second spelling to fear) and
refuses, with ``MalformedCode``, anything truncated, nested too deep, with trailing bytes, or
with a map key that is not an integer, text or bytes.
"""

from __future__ import annotations

__all__ = ["MAX_DEPTH", "Tag", "loads"]

import struct
from typing import Final, NamedTuple

from codeengine.code.errors import MalformedCode

MAX_DEPTH: Final = 16
"""Nesting deeper than this is refused: a DCC is four levels deep, and recursion is bounded."""

_SIMPLE: Final = {20: False, 21: True, 22: None, 23: None}


class Tag(NamedTuple):
    """A tagged item: its tag number and the item."""

    number: int
    value: object


class _Break:
    """The "break" stop code that ends an indefinite-length item."""


_STOP: Final = _Break()


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise MalformedCode("CBOR: truncated")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def argument(self, info: int) -> int:
        if info < 24:
            return info
        if info > 27:
            raise MalformedCode("CBOR: reserved additional information")
        return int.from_bytes(self.take(1 << (info - 24)), "big")

    def item(self, depth: int) -> object:
        # The head is read inline, not through take() and argument(): a DCC holds about sixty
        # items, and the calls were half of its decoding time.
        if depth > MAX_DEPTH:
            raise MalformedCode("CBOR: nested too deep")
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise MalformedCode("CBOR: truncated")
        initial = data[pos]
        self.pos = pos + 1
        major, info = initial >> 5, initial & 0x1F
        if major == 7:
            return _STOP if info == 31 else self._simple(info)
        if info < 24:
            value = info
        elif info == 31:
            return self._indefinite(major, depth)
        else:
            value = self.argument(info)
        if major == 0:
            return value
        if major == 1:
            return -1 - value
        if major == 2:
            return self.take(value)
        if major == 3:
            return _text(self.take(value))
        if major == 4:
            return [self._element(depth) for _ in range(value)]
        if major == 5:
            return self._map(depth, value)
        return Tag(value, self._element(depth))

    def _element(self, depth: int) -> object:
        value = self.item(depth + 1)
        if value is _STOP:
            raise MalformedCode("CBOR: break outside an indefinite-length item")
        return value

    def _simple(self, info: int) -> object:
        if info in _SIMPLE:
            return _SIMPLE[info]
        if info == 25:
            return struct.unpack(">e", self.take(2))[0]
        if info == 26:
            return struct.unpack(">f", self.take(4))[0]
        if info == 27:
            return struct.unpack(">d", self.take(8))[0]
        raise MalformedCode("CBOR: unassigned simple value")

    def _indefinite(self, major: int, depth: int) -> object:
        if major in (2, 3):
            chunks = []
            while (chunk := self.item(depth + 1)) is not _STOP:
                if type(chunk) is not (bytes if major == 2 else str):
                    raise MalformedCode("CBOR: a string chunk of another type")
                chunks.append(chunk)
            return b"".join(chunks) if major == 2 else "".join(chunks)  # type: ignore[arg-type]
        if major == 4:
            items = []
            while (element := self.item(depth + 1)) is not _STOP:
                items.append(element)
            return items
        if major == 5:
            return self._map(depth, None)
        raise MalformedCode("CBOR: indefinite length on an integer or tag")

    def _map(self, depth: int, size: int | None) -> dict[object, object]:
        result: dict[object, object] = {}
        count = 0
        while size is None or count < size:
            key = self.item(depth + 1)
            if key is _STOP and size is None:
                return result
            if type(key) not in (int, str, bytes):
                raise MalformedCode("CBOR: a map key that is not an integer, text or bytes")
            if key in result:
                raise MalformedCode("CBOR: a map key given twice")
            result[key] = self._element(depth)
            count += 1
        return result


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedCode("CBOR: text that is not UTF-8") from None


def loads(data: bytes) -> object:
    """The one data item ``data`` holds; MalformedCode if it is not exactly one well-formed item.

    Integers, bytes, text, lists, dicts, bools, None and floats as Python values; tags as Tag.
    """
    reader = _Reader(bytes(data))
    value = reader.item(0)
    if value is _STOP:
        raise MalformedCode("CBOR: a break where an item was expected")
    if reader.pos != len(reader.data):
        raise MalformedCode("CBOR: trailing bytes after the item")
    return value
