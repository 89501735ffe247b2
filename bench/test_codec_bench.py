"""Micro-benchmarks of the code codec and the signing suites (``make bench`` times them).

Under ``--benchmark-disable`` each runs once as a smoke test; the asserts check the result.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from pytest_benchmark.fixture import BenchmarkFixture

from codeengine.code.keyring import Keyring
from codeengine.code.model import CodeKind, Colour
from codeengine.code.suites import ED25519, ES256, SigningSuite, deterministic_random
from codeengine.code.token import Claims, decode, encode, verify_at
from codeengine.code.trustlist import TrustList

NOW = 1_800_000_000
SUITES: dict[str, SigningSuite] = {"Ed25519": ED25519, "ES256": ES256}
RINGS = {
    name: Keyring.generate_at(NOW - 60, suite, deterministic_random(name.encode()))
    for name, suite in SUITES.items()
}
TRUST = TrustList.of([ring.current.trusted for ring in RINGS.values()])
CLAIMS = Claims(
    exp=NOW + 120,
    iat=NOW,
    cti=b"\x01\x02\x03\x04\x05\x06",
    subject=bytes(range(12)),
    kind=CodeKind.HEALTH,
    city=320100,
    colour=Colour.GREEN,
    version=65535,
)
TOKENS = {name: encode(CLAIMS, ring.current) for name, ring in RINGS.items()}
# Roughly a Sig_structure's size.
MESSAGE = bytes(range(100))

names = pytest.mark.parametrize("name", sorted(SUITES))


@names
def test_encode(benchmark: BenchmarkFixture, name: str) -> None:
    token = benchmark(encode, CLAIMS, RINGS[name].current)
    assert decode(token).claims == CLAIMS


@names
def test_decode(benchmark: BenchmarkFixture, name: str) -> None:
    decoded = benchmark(decode, TOKENS[name])
    assert decoded.claims == CLAIMS


@names
def test_verify_at(benchmark: BenchmarkFixture, name: str) -> None:
    assert benchmark(verify_at, TOKENS[name], TRUST, NOW) == CLAIMS


@names
def test_sign(benchmark: BenchmarkFixture, name: str) -> None:
    private = RINGS[name].current.private
    signature = benchmark(private.sign, MESSAGE)
    private.public.verify(signature, MESSAGE)


@names
def test_verify(benchmark: BenchmarkFixture, name: str) -> None:
    private = RINGS[name].current.private
    signature = private.sign(MESSAGE)
    benchmark(private.public.verify, signature, MESSAGE)


def test_ed25519_verify_with_cryptography_for_comparison(benchmark: BenchmarkFixture) -> None:
    """The OpenSSL path the suite does not use: kept to re-measure the choice of libsodium."""
    private = RINGS["Ed25519"].current.private
    public = ed25519.Ed25519PublicKey.from_public_bytes(private.public.data)
    signature = private.sign(MESSAGE)
    benchmark(public.verify, signature, MESSAGE)


def test_ed25519_sign_with_cryptography_for_comparison(benchmark: BenchmarkFixture) -> None:
    """The OpenSSL signing path: it must give the very signature libsodium gives."""
    private = RINGS["Ed25519"].current.private
    key = ed25519.Ed25519PrivateKey.from_private_bytes(private.secret.reveal())
    assert benchmark(key.sign, MESSAGE) == private.sign(MESSAGE)
