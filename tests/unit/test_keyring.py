"""Key ids, key validity, rotation, pruning and keyring persistence."""

from __future__ import annotations

import json

import pytest

from codeengine.code.errors import KeyringError
from codeengine.code.keyring import (
    DEFAULT_KEY_LIFETIME_S,
    KID_BYTES,
    Keyring,
    SigningKey,
    TrustedKey,
    jwk_thumbprint,
    key_id,
    parse_private_jwk,
    private_jwk,
    public_jwk,
)
from codeengine.code.suites import (
    ED25519,
    ES256,
    b64url_decode,
    b64url_encode,
    deterministic_random,
)

NOW = 1_800_000_000
OVERLAP_S = 900
# RFC 8037 appendix A.3: the thumbprint of the A.1 key.
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def _ring(seed: bytes = b"ring") -> Keyring:
    return Keyring.generate_at(NOW, ED25519, deterministic_random(seed))


def test_thumbprint_and_key_id_rfc8037_known_answer() -> None:
    public = ED25519.public_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X})
    assert b64url_encode(jwk_thumbprint(public)) == RFC8037_THUMBPRINT
    assert key_id(public) == b64url_decode(RFC8037_THUMBPRINT)[:KID_BYTES]
    assert len(key_id(public)) == 8


def test_es256_thumbprint_covers_both_coordinates() -> None:
    one = ES256.generate(deterministic_random(b"1")).public
    other = ES256.generate(deterministic_random(b"2")).public
    assert key_id(one) != key_id(other)


def test_new_keyring_signs_for_its_lifetime_only() -> None:
    ring = _ring()
    assert ring.retired == ()
    assert ring.current.not_before == NOW
    assert ring.current.not_after == NOW + DEFAULT_KEY_LIFETIME_S
    assert ring.signing_key_at(NOW) is ring.current
    assert ring.signing_key_at(NOW + DEFAULT_KEY_LIFETIME_S) is ring.current
    with pytest.raises(KeyringError, match="rotate"):
        ring.signing_key_at(NOW + DEFAULT_KEY_LIFETIME_S + 1)
    with pytest.raises(KeyringError):
        ring.signing_key_at(NOW - 1)


def test_rotation_retires_the_old_key_for_the_overlap() -> None:
    ring = _ring()
    later = NOW + 3600
    rotated = ring.rotate_at(later, ES256, OVERLAP_S, deterministic_random(b"next"))
    assert rotated.current.kid != ring.current.kid
    assert rotated.current.alg == ES256.cose_alg
    assert rotated.current.not_before == later
    (retired,) = rotated.retired
    assert retired == TrustedKey(ring.current.kid, ring.current.private.public, NOW, later + 900)
    assert [k.kid for k in rotated.public_keys()] == [rotated.current.kid, ring.current.kid]
    # The original keyring is a value: rotation made a new one.
    assert ring.retired == ()


def test_pruning_drops_only_keys_past_not_after() -> None:
    ring = _ring().rotate_at(NOW + 10, ED25519, 100, deterministic_random(b"2"))
    ring = ring.rotate_at(NOW + 50, ED25519, 100, deterministic_random(b"3"))
    assert [k.not_after for k in ring.retired] == [NOW + 150, NOW + 110]
    assert ring.prune_at(NOW + 110).retired == ring.retired
    assert [k.not_after for k in ring.prune_at(NOW + 111).retired] == [NOW + 150]
    assert ring.prune_at(NOW + 151).retired == ()
    assert ring.prune_at(NOW + 151).current == ring.current


def test_rotation_refuses_a_negative_overlap_and_time_going_backwards() -> None:
    ring = _ring()
    with pytest.raises(KeyringError):
        ring.rotate_at(NOW + 10, ED25519, -1, deterministic_random(b"2"))
    with pytest.raises(KeyringError):
        ring.rotate_at(NOW - 1000, ED25519, 10, deterministic_random(b"2"))


def test_keyring_refuses_a_key_id_twice() -> None:
    ring = _ring()
    with pytest.raises(KeyringError, match="twice"):
        Keyring(ring.current, (ring.current.trusted,))


def test_key_entries_check_their_id_and_validity() -> None:
    public = _ring().current.private.public
    with pytest.raises(KeyringError, match="thumbprint"):
        TrustedKey(key_id(_ring(b"other").current.private.public), public, 0, 10)
    with pytest.raises(KeyringError):
        TrustedKey.of(public, 10, 9)
    with pytest.raises(KeyringError):
        TrustedKey.of(public, True, 9)
    with pytest.raises(KeyringError):
        TrustedKey.of(public, -1, 9)
    entry = TrustedKey.of(public, 10, 20)
    assert [entry.valid_at(t) for t in (9, 10, 20, 21)] == [False, True, True, False]


def test_private_jwks_round_trip_through_json() -> None:
    ring = _ring().rotate_at(NOW + 10, ES256, OVERLAP_S, deterministic_random(b"2"))
    document = json.loads(json.dumps(ring.to_private_jwks()))
    assert Keyring.from_private_jwks(document) == ring
    current, retired = document["keys"]
    assert "d" in current and "d" not in retired
    assert current["alg"] == "ES256" and retired["alg"] == "EdDSA"
    assert current["kid"] == b64url_encode(ring.current.kid)
    assert (current["nbf"], current["exp"]) == (ring.current.not_before, ring.current.not_after)


def test_private_jwks_needs_one_or_two_signing_keys() -> None:
    ring = _ring().rotate_at(NOW + 10, ED25519, OVERLAP_S, deterministic_random(b"2"))
    keys = ring.to_private_jwks()["keys"]
    assert isinstance(keys, list)
    current, retired = keys
    later = Keyring.generate_at(NOW + 20, ED25519, deterministic_random(b"y")).current
    three = [current, private_jwk(_ring(b"x").current), private_jwk(later)]
    for keys in ([retired], three, []):
        with pytest.raises(KeyringError, match="one or two keys with 'd'"):
            Keyring.from_private_jwks({"keys": keys})
    same_start = Keyring.generate_at(NOW + 10, ED25519, deterministic_random(b"z")).current
    with pytest.raises(KeyringError, match="start after"):
        Keyring.from_private_jwks({"keys": [current, private_jwk(same_start)]})


def test_staged_rotation_publishes_first_and_signs_later() -> None:
    ring = _ring()
    old = ring.current
    staged = ring.rotate_at(
        NOW + 100, ED25519, OVERLAP_S, deterministic_random(b"n"), activate_in_s=300
    )
    assert staged.next is not None
    new_kid = staged.next.kid
    # Published at once, so terminals learn it before they meet a code it signed ...
    assert [k.kid for k in staged.public_keys()] == [old.kid, new_kid]
    # ... but the old key keeps signing until the switch, then verifies for the overlap.
    assert staged.signing_key_at(NOW + 399).kid == old.kid
    assert staged.signing_key_at(NOW + 400).kid == new_kid
    promoted = staged.promote_at(NOW + 400)
    assert promoted.current.kid == new_kid and promoted.next is None
    (retired,) = promoted.retired
    assert (retired.kid, retired.not_after) == (old.kid, NOW + 400 + OVERLAP_S)
    # The staged state survives persistence, and a second rotation waits for the first.
    assert Keyring.from_private_jwks(staged.to_private_jwks()) == staged
    with pytest.raises(KeyringError, match="pending"):
        staged.rotate_at(
            NOW + 200, ED25519, OVERLAP_S, deterministic_random(b"m"), activate_in_s=300
        )
    emergency = staged.rotate_at(NOW + 200, ED25519, OVERLAP_S, deterministic_random(b"e"))
    assert emergency.next is None and emergency.current.kid not in {old.kid, new_kid}
    assert emergency.signing_key_at(NOW + 200).kid == emergency.current.kid
    assert [k.kid for k in emergency.retired] == [old.kid], "the staged key never signed"
    again = staged.rotate_at(NOW + 500, ED25519, OVERLAP_S, deterministic_random(b"m"))
    assert again.current.kid not in {old.kid, new_kid}
    assert [k.kid for k in again.retired] == [new_kid, old.kid]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"d": b64url_encode(bytes(32))}, "'d'"),
        ({"kid": "AAAAAAAAAAA"}, "thumbprint"),
        ({"alg": "ES256"}, "'kty'"),
        ({"use": "enc"}, "'use'"),
        ({"exp": "2030"}, "'exp'"),
        ({"key_ops": ["sign"]}, "unknown members"),
    ],
)
def test_bad_private_jwk_names_the_problem(change: dict[str, object], problem: str) -> None:
    jwk = private_jwk(_ring().current) | change
    with pytest.raises(KeyringError, match=problem):
        Keyring.from_private_jwks({"keys": [jwk]})


def test_public_and_private_jwk_carry_the_same_public_members() -> None:
    key = _ring().current
    private = private_jwk(key)
    assert {k: v for k, v in private.items() if k != "d"} == public_jwk(key.trusted)
    assert parse_private_jwk(private) == key


def test_keyring_repr_hides_the_private_key() -> None:
    ring = _ring()
    secret = ring.current.private.secret.reveal()
    text = repr(ring)
    assert secret.hex() not in text and b64url_encode(secret) not in text
    assert "Secret('**********')" in text


def test_signing_key_refuses_a_wrong_id() -> None:
    private = _ring().current.private
    with pytest.raises(KeyringError):
        SigningKey(key_id(_ring(b"other").current.private.public), private, 0, 1)
