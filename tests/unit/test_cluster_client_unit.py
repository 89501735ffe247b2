"""The hot-path client's pure parts: slot hashing and command packing (no loop, no Redis)."""

from __future__ import annotations

import logging
import random

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot as redis_py_key_slot

from codeengine.code.pseudonym import subject_id
from codeengine.store import keyspace
from codeengine.store.cluster import FastCluster, key_slot, tag_slot
from codeengine.store.connection import TimedOut, _pack_python, pack_command, pack_pair
from codeengine.store.security import StoreRefused


def crc16_xmodem(data: bytes) -> int:
    """The bit-by-bit CRC16/XMODEM of the Redis Cluster specification, as a reference."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def spec_slot(key: bytes) -> int:
    """HASH_SLOT as the Redis Cluster specification writes it, loop for loop."""
    start = next((i for i, c in enumerate(key) if c == ord("{")), len(key))
    if start == len(key):
        return crc16_xmodem(key) % 16384
    end = next((i for i in range(start + 1, len(key)) if key[i] == ord("}")), len(key))
    if end == len(key) or end == start + 1:
        return crc16_xmodem(key) % 16384
    return crc16_xmodem(key[start + 1 : end]) % 16384


def test_crc16_matches_the_xmodem_check_value() -> None:
    # The catalogue check value of CRC-16/XMODEM, quoted in the Redis Cluster specification.
    assert crc16_xmodem(b"123456789") == 0x31C3
    assert key_slot("123456789") == 0x31C3 % 16384


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        ("foo", 12182),
        ("bar", 5061),
        ("hello", 866),
        ("somekey", 11058),
        ("foo{hash_tag}", 2515),
        ("", 0),
    ],
    ids=["foo", "bar", "hello", "somekey", "foo-hash-tag", "empty"],
)
def test_known_slots(key: str, slot: int) -> None:
    assert key_slot(key) == slot
    assert key_slot(key.encode()) == slot


@pytest.mark.parametrize(
    ("key", "hashed"),
    [
        ("{user1000}.following", "user1000"),
        ("{user1000}.followers", "user1000"),
        ("foo{}{bar}", "foo{}{bar}"),
        ("foo{{bar}}zap", "{bar"),
        ("foo{bar}{zap}", "bar"),
        ("{}", "{}"),
        ("{", "{"),
        ("}{x}", "x"),
        ("abc{x", "abc{x"),
    ],
    ids=[
        "tag-a",
        "tag-b",
        "empty-tag",
        "nested-brace",
        "first-tag",
        "only-braces",
        "open",
        "close-first",
        "unclosed",
    ],
)
def test_hash_tag_rules(key: str, hashed: str) -> None:
    assert key_slot(key) == crc16_xmodem(hashed.encode()) % 16384
    assert key_slot(key) == redis_py_key_slot(key.encode())


def test_slots_agree_with_the_specification_and_redis_py_on_random_keys() -> None:
    rng = random.Random(20220101)
    for _ in range(3000):
        # Mostly braces and two letters, so that every hash-tag corner case comes up often.
        alphabet = b"{}ab" if rng.random() < 0.7 else bytes(range(256))
        key = bytes(rng.choices(alphabet, k=rng.randrange(12)))
        assert key_slot(key) == spec_slot(key) == redis_py_key_slot(key), key


def test_non_ascii_text_keys_hash_their_utf8_bytes() -> None:
    assert key_slot("亮码:{主体}") == crc16_xmodem("主体".encode()) % 16384


def test_pack_matches_the_resp2_wire_format() -> None:
    expected = b"*4\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n-7\r\n$3\r\n2.5\r\n"
    assert _pack_python(("SET", "ké", -7, 2.5)) == expected
    assert pack_command(("SET", "ké", -7, 2.5)) == expected


@pytest.mark.parametrize(
    "args",
    [
        ("GET", b"k"),
        ("SET", b"\x00\r\n$3\r\n", b""),
        ("EVALSHA", "ab" * 20, 2, "{s}a", "{s}b", 0, 2**70, -(2**63)),
        ("X", 0.1, 1e20, -0.0, 1e-7, 123456789.123456789, float("inf")),
        ("MGET", *[f"{{t}}{i}" for i in range(100)]),
        ("SET", "v", b"x" * 100_000),
    ],
    ids=["get", "binary-with-crlf", "ints", "floats", "many-args", "large-value"],
)
def test_python_packer_agrees_with_hiredis(args: tuple[str | bytes | int | float, ...]) -> None:
    assert _pack_python(args) == hiredis.pack_command(args)  # type: ignore[arg-type]


@given(st.binary(max_size=40) | st.text(max_size=40), st.binary(max_size=40) | st.text(max_size=40))
def test_a_pair_packs_as_the_general_packer_packs_it(
    first: str | bytes, second: str | bytes
) -> None:
    assert pack_pair(b"MGET", first, second) == pack_command(("MGET", first, second))


def test_packed_commands_parse_back_to_their_arguments() -> None:
    reader = hiredis.Reader()
    args = ("SET", b"\r\n*1\r\n", 42)
    reader.feed(_pack_python(args))
    assert reader.gets() == [b"SET", b"\r\n*1\r\n", b"42"]


@pytest.mark.parametrize("bad", [None, True, bytearray(b"x"), ["x"]], ids=repr)
def test_packer_refuses_other_types(bad: object) -> None:
    with pytest.raises(TypeError):
        _pack_python(("SET", bad))  # type: ignore[arg-type]


@given(st.binary(min_size=12, max_size=12))
def test_a_subjects_tag_slot_is_every_one_of_its_keys_slot(raw: bytes) -> None:
    subject = subject_id(raw)
    slot = tag_slot(subject)
    assert slot == redis_py_key_slot(subject.encode())
    for key in (
        keyspace.subject_key(subject),
        keyspace.token_key(subject),
        keyspace.token_key(subject, 4),
    ):
        assert key_slot(key) == slot


def test_each_connect_failure_is_logged_once_until_a_connect_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FastCluster([("127.0.0.1", 7000)])
    wrong = StoreRefused("store 127.0.0.1:7000 refused the login of 'codeengine'; check ...")
    other = StoreRefused("store 127.0.0.1:7001 refused the login of 'codeengine'; check ...")
    stalled = TimedOut("store 127.0.0.1:7002: no TLS handshake within 0.25 s; ...")
    with caplog.at_level(logging.WARNING, logger="codeengine.store.cluster"):
        # A readiness probe retrying every few seconds meets the same refusals again and again.
        for _ in range(3):
            for failure in (wrong, other, stalled):
                client.connect_failed(failure)
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("ERROR", str(wrong)),
            ("ERROR", str(other)),
            ("WARNING", str(stalled)),
        ]
        caplog.clear()
        client.connect_failed_no_more()
        client.connect_failed(wrong)
        assert [r.getMessage() for r in caplog.records] == [str(wrong)], "news again"
