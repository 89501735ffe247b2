"""The trust list: JWKS round trips, strict reading, lookup by key id and time."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.errors import KeyringError, Reason, UnknownKeyId
from codeengine.code.keyring import Keyring
from codeengine.code.suites import (
    ED25519,
    ES256,
    SuiteRegistry,
    b64url_encode,
    deterministic_random,
)
from codeengine.code.trustlist import TrustList

NOW = 1_800_000_000


def _ring() -> Keyring:
    ring = Keyring.generate_at(NOW - 1000, ED25519, deterministic_random(b"one"))
    return ring.rotate_at(NOW, ES256, 900, deterministic_random(b"two"))


RING = _ring()
TRUST = TrustList.from_keyring(RING)
GOOD: dict[str, Any] = TRUST.to_jwks()


def test_published_jwks_has_exactly_the_documented_members() -> None:
    es256, ed25519 = GOOD["keys"]
    assert set(ed25519) == {"kty", "crv", "x", "kid", "alg", "use", "nbf", "exp"}
    assert (ed25519["kty"], ed25519["crv"], ed25519["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert set(es256) == {"kty", "crv", "x", "y", "kid", "alg", "use", "nbf", "exp"}
    assert (es256["kty"], es256["crv"], es256["alg"]) == ("EC", "P-256", "ES256")
    assert ed25519["kid"] == b64url_encode(RING.retired[0].kid)
    assert (ed25519["nbf"], ed25519["exp"]) == (NOW - 1000, NOW + 900)


def test_jwks_round_trips() -> None:
    assert TrustList.from_jwks(GOOD) == TRUST
    assert TrustList.from_json(TRUST.to_json()) == TRUST
    assert TrustList.from_json(TRUST.to_json().encode()) == TRUST
    assert json.loads(TRUST.to_json()) == GOOD


def test_key_at_honours_validity_inclusively() -> None:
    retired = RING.retired[0]
    assert TRUST.key_at(retired.kid, NOW - 1000) == retired
    assert TRUST.key_at(retired.kid, NOW + 900) == retired
    for when in (NOW - 1001, NOW + 901):
        with pytest.raises(UnknownKeyId) as caught:
            TRUST.key_at(retired.kid, when)
        assert caught.value.reason == Reason.UNKNOWN_KID
    with pytest.raises(UnknownKeyId):
        TRUST.key_at(b"\x00" * 8, NOW)
    assert TRUST.get(retired.kid) == retired
    assert TRUST.get(b"nothing!") is None
    assert retired.kid in TRUST and b"nothing!" not in TRUST and "text" not in TRUST


def _set(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(GOOD)
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


def _drop(index: int, member: str) -> dict[str, Any]:
    document = copy.deepcopy(GOOD)
    del document["keys"][index][member]
    return document


ED = 1  # index of the Ed25519 key in GOOD
EC = 0  # index of the P-256 key in GOOD

BAD_DOCUMENTS: list[tuple[str, object, str]] = [
    ("not-an-object", [], "JSON object"),
    ("extra-top-member", GOOD | {"revoked": []}, "exactly the member 'keys'"),
    ("keys-not-array", {"keys": {}}, "array"),
    ("key-not-object", {"keys": ["x"]}, r"keys\[0\]: a JWK must be a JSON object"),
    ("duplicate-key", {"keys": [GOOD["keys"][0], GOOD["keys"][0]]}, "twice"),
    ("missing-kty", _drop(ED, "kty"), "'kty'"),
    ("missing-crv", _drop(ED, "crv"), "'crv'"),
    ("missing-x", _drop(ED, "x"), "'x'"),
    ("missing-y", _drop(EC, "y"), "'y'"),
    ("missing-kid", _drop(ED, "kid"), "'kid'"),
    ("missing-alg", _drop(ED, "alg"), "'alg'"),
    ("missing-use", _drop(ED, "use"), "'use'"),
    ("missing-nbf", _drop(ED, "nbf"), "'nbf'"),
    ("missing-exp", _drop(ED, "exp"), "'exp'"),
    ("nbf-bool", _set(("keys", ED, "nbf"), True), "'nbf'"),
    ("nbf-float", _set(("keys", ED, "nbf"), 1.0), "'nbf'"),
    ("exp-text", _set(("keys", ED, "exp"), "2030"), "'exp'"),
    ("nbf-after-exp", _set(("keys", ED, "nbf"), NOW + 901), "not_before"),
    ("unknown-alg", _set(("keys", ED, "alg"), "ES512"), "'alg'"),
    ("alg-not-text", _set(("keys", ED, "alg"), -8), "'alg'"),
    ("alg-kty-mismatch", _set(("keys", ED, "alg"), "ES256"), "'kty'"),
    ("use-enc", _set(("keys", ED, "use"), "enc"), "'use'"),
    ("kid-of-other-key", _set(("keys", ED, "kid"), GOOD["keys"][EC]["kid"]), "thumbprint"),
    ("kid-padded", _set(("keys", ED, "kid"), GOOD["keys"][ED]["kid"] + "="), "'kid'"),
    ("kid-number", _set(("keys", ED, "kid"), 7), "'kid'"),
    ("x-short", _set(("keys", ED, "x"), GOOD["keys"][ED]["x"][:-2]), "'x'"),
    ("y-off-curve", _set(("keys", EC, "y"), GOOD["keys"][EC]["x"]), "not a point"),
    ("private-d", _set(("keys", ED, "d"), "AAAA"), "'d'"),
    ("extra-member", _set(("keys", ED, "key_ops"), ["verify"]), "unknown members"),
]


@pytest.mark.parametrize(
    ("document", "problem"),
    [(doc, problem) for _, doc, problem in BAD_DOCUMENTS],
    ids=[name for name, _, _ in BAD_DOCUMENTS],
)
def test_bad_documents_raise_keyring_error_naming_the_problem(
    document: object, problem: str
) -> None:
    with pytest.raises(KeyringError, match=problem):
        TrustList.from_jwks(document)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"keys": [], "keys": []}', "repeats"),
        ('{"keys": [NaN]}', "non-standard"),
        ('{"keys": [', "not valid JSON"),
        (b'{"keys": ["\xff"]}', "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
    ids=["repeated-name", "nan", "truncated", "not-utf8", "deeply-nested"],
)
def test_bad_json_raises_keyring_error(text: str | bytes, problem: str) -> None:
    with pytest.raises(KeyringError, match=problem):
        TrustList.from_json(text)


def test_a_registry_without_a_suite_refuses_its_keys() -> None:
    with pytest.raises(KeyringError, match="'alg'"):
        TrustList.from_jwks(GOOD, SuiteRegistry([ED25519]))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    document=st.one_of(
        JSON,
        st.builds(lambda keys: {"keys": keys}, st.lists(JSON, max_size=3)),
        st.builds(
            lambda member, value: _set(("keys", ED, member), value),
            st.sampled_from(sorted(GOOD["keys"][ED])),
            JSON,
        ),
    )
)
def test_arbitrary_documents_raise_only_keyring_error(document: object) -> None:
    try:
        trust = TrustList.from_jwks(document)
    except KeyringError:
        return
    assert trust.to_jwks() == document
