"""The terminal SDK with trust anchors: it takes only signed lists, and refuses rollback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from codeengine.code.errors import ListRefused, Reason
from codeengine.code.keyring import Keyring
from codeengine.code.model import CodeKind, Colour
from codeengine.code.signedlist import ListKind, revocations_json, sign_list
from codeengine.code.suites import ED25519, deterministic_random
from codeengine.code.token import Claims, encode
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations
from verifier.offline import CachedList, OfflineVerifier, load_anchors

NOW = 1_800_000_000
TTL = 86_400
RING = Keyring.generate_at(NOW - 1000, ED25519, deterministic_random(b"signing"))
TRUST = TrustList.from_keyring(RING).to_json().encode()
ANCHOR = Keyring.generate_at(NOW - 1000, ED25519, deterministic_random(b"anchor"))
ANCHOR_JWKS = TrustList.from_keyring(ANCHOR).to_json()
ANCHORS = load_anchors([ANCHOR_JWKS])
THIEF = Keyring.generate_at(NOW - 1000, ED25519, deterministic_random(b"thief"))
CTI = b"\x01" * 6


def code() -> str:
    claims = Claims(NOW + 120, NOW, CTI, b"\x07" * 12, CodeKind.HEALTH, 320500, Colour.GREEN, 4)
    return encode(claims, RING.current)


def lists(
    seq: int, revoked: frozenset[bytes] = frozenset(), ring: Keyring = ANCHOR, at: int = NOW
) -> tuple[bytes, bytes]:
    """A signed trust list and revocation list, both number ``seq``."""
    key = ring.current
    trust = sign_list(ListKind.TRUST, TRUST, seq, at, at + TTL, key)
    content = revocations_json(Revocations(codes=revoked))
    revocations = sign_list(ListKind.REVOCATIONS, content, seq, at, at + TTL, key)
    return trust.document, revocations.document


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def terminal(seq: int = 10) -> tuple[OfflineVerifier, Clock]:
    clock = Clock(NOW)
    cached = CachedList.from_signed(*lists(seq), ANCHORS, NOW)
    return OfflineVerifier(cached, clock=clock, anchors=ANCHORS), clock


def refusal(sdk: OfflineVerifier, trust: bytes, revocations: bytes) -> Reason:
    held = sdk.cached
    with pytest.raises(ListRefused) as refused:
        sdk.refresh(trust, revocations)
    assert sdk.cached is held, "a refused pair leaves the lists held in use"
    return refused.value.reason


def test_signed_lists_verify_codes_as_the_unsigned_ones_do() -> None:
    sdk, _ = terminal()
    verdict = sdk.verify(code())
    assert (verdict.valid, verdict.reason, verdict.colour) == (True, "VALID", Colour.GREEN)
    assert sdk.cached.signed and sdk.cached.expires_at == NOW + TTL


def test_the_sdk_refuses_an_unsigned_list() -> None:
    unsigned = CachedList.from_documents(TRUST, None, NOW)
    with pytest.raises(ListRefused) as refused:
        OfflineVerifier(unsigned, anchors=ANCHORS)
    assert refused.value.reason == Reason.LIST_UNSIGNED
    sdk, _ = terminal()
    with pytest.raises(ListRefused) as refused:
        sdk.update(unsigned)
    assert refused.value.reason == Reason.LIST_UNSIGNED
    _, revocations = lists(11)
    assert refusal(sdk, TRUST, revocations) == Reason.LIST_UNSIGNED
    assert refusal(sdk, lists(11)[0], b'{"codes":[],"keys":[]}') == Reason.LIST_UNSIGNED


def test_the_sdk_refuses_a_list_signed_by_another_key() -> None:
    sdk, _ = terminal()
    assert refusal(sdk, *lists(11, ring=THIEF)) == Reason.LIST_UNKNOWN_ANCHOR
    # One forged list of the pair is enough to refuse the pair.
    assert refusal(sdk, lists(11)[0], lists(11, ring=THIEF)[1]) == Reason.LIST_UNKNOWN_ANCHOR


def test_the_sdk_refuses_a_tampered_list() -> None:
    sdk, _ = terminal()
    trust, revocations = lists(11, revoked=frozenset({CTI}))
    at = revocations.index(CTI.hex().encode())
    forged = revocations[:at] + b"ffffffffffff" + revocations[at + 12 :]
    assert refusal(sdk, trust, forged) == Reason.LIST_BAD_SIGNATURE


def test_the_sdk_refuses_an_older_list_than_the_one_it_holds() -> None:
    sdk, _ = terminal(seq=10)
    # A revocation arrives in list 11; replaying list 10 would bring the code back.
    sdk.refresh(*lists(11, revoked=frozenset({CTI})))
    assert sdk.verify(code()).reason == "REVOKED"
    assert refusal(sdk, *lists(10)) == Reason.LIST_ROLLBACK
    assert sdk.verify(code()).reason == "REVOKED", "still the newer list"
    with pytest.raises(ListRefused) as refused:
        sdk.update(CachedList.from_signed(*lists(10), ANCHORS, NOW))
    assert refused.value.reason == Reason.LIST_ROLLBACK
    # The same lists fetched again (no 304 on the way) are taken.
    sdk.refresh(*lists(11, revoked=frozenset({CTI})))


def test_the_sdk_refuses_an_expired_list_and_goes_stale_at_the_expiry_it_holds() -> None:
    sdk, clock = terminal()
    clock.now = NOW + TTL + 1
    assert refusal(sdk, *lists(11)) == Reason.LIST_EXPIRED
    assert sdk.stale
    assert sdk.verify(code()).reason == "TRUST_LIST_STALE"
    fresh = CachedList.from_signed(*lists(12, at=NOW + TTL), ANCHORS, NOW + TTL + 1)
    sdk.update(fresh)
    assert not sdk.stale


def test_the_max_age_still_applies_to_signed_lists() -> None:
    clock = Clock(NOW)
    cached = CachedList.from_signed(*lists(10), ANCHORS, NOW)
    sdk = OfflineVerifier(cached, clock=clock, anchors=ANCHORS, max_age_s=3600)
    clock.now = NOW + 3601
    assert sdk.verify(code()).reason == "TRUST_LIST_STALE"


def test_a_list_of_the_other_kind_is_refused() -> None:
    sdk, _ = terminal()
    trust, revocations = lists(11)
    assert refusal(sdk, revocations, trust) == Reason.LIST_WRONG_KIND


def test_during_a_rotation_both_anchors_are_taken() -> None:
    new = Keyring.generate_at(NOW - 10, ED25519, deterministic_random(b"next anchor"))
    both = load_anchors([ANCHOR_JWKS, TrustList.from_keyring(new).to_json()])
    assert len(both) == 2
    held = CachedList.from_signed(*lists(10), both, NOW)
    sdk = OfflineVerifier(held, clock=Clock(NOW), anchors=both)
    sdk.refresh(*lists(11, ring=new))
    assert sdk.cached.signed_trust is not None
    assert sdk.cached.signed_trust.anchor == new.current.kid


def test_a_list_by_an_anchor_no_longer_configured_sets_no_floor() -> None:
    # A thief's anchor signed list 10**15; once terminals drop that anchor, genuine lists with
    # lower sequences must be taken again.
    stolen = load_anchors([ANCHOR_JWKS, TrustList.from_keyring(THIEF).to_json()])
    held = CachedList.from_signed(*lists(10**15, ring=THIEF), stolen, NOW)
    sdk = OfflineVerifier(held, clock=Clock(NOW), anchors=stolen)
    assert refusal(sdk, *lists(11)) == Reason.LIST_ROLLBACK
    # Reconfigured without the thief's anchor, the terminal does not take its lists back...
    with pytest.raises(ListRefused) as refused:
        OfflineVerifier(held, clock=Clock(NOW), anchors=ANCHORS)
    assert refused.value.reason == Reason.LIST_UNKNOWN_ANCHOR
    # ...and they set no floor for the genuine ones.
    genuine = CachedList.from_signed(*lists(11), ANCHORS, NOW, held=held)
    assert genuine.signed_trust is not None and genuine.signed_trust.seq == 11
    with pytest.raises(ListRefused) as refused:
        CachedList.from_signed(*lists(11), stolen, NOW, held=held)
    assert refused.value.reason == Reason.LIST_ROLLBACK


def test_refresh_needs_anchors() -> None:
    sdk = OfflineVerifier(CachedList.from_documents(TRUST, None, NOW), clock=Clock(NOW))
    with pytest.raises(ListRefused):
        sdk.refresh(*lists(11))


def test_load_anchors_needs_one() -> None:
    with pytest.raises(ValueError, match="no trust anchor"):
        load_anchors([json.dumps({"keys": []})])


def test_the_command_line_takes_the_anchor_and_refuses_with_the_reason(tmp_path: Path) -> None:
    # The command line reads the real clock: everything here is valid from 0 to 2**40, so the
    # answers do not depend on when the test runs.
    forever = 2**40
    ring = Keyring.generate_at(0, ED25519, deterministic_random(b"cli"), lifetime_s=forever)
    anchor_ring = Keyring.generate_at(0, ED25519, deterministic_random(b"a"), lifetime_s=forever)
    claims = Claims(forever, 0, CTI, b"\x07" * 12, CodeKind.HEALTH, 320500, Colour.GREEN, 4)
    text = encode(claims, ring.current)
    trust_json = TrustList.from_keyring(ring).to_json().encode()
    files = {
        "anchor": TrustList.from_keyring(anchor_ring).to_json().encode(),
        "trust.cose": sign_list(ListKind.TRUST, trust_json, 1, 0, forever, anchor_ring.current)
        .document,
        "revocations.cose": sign_list(
            ListKind.REVOCATIONS, revocations_json(Revocations()), 1, 0, forever,
            anchor_ring.current,
        ).document,
        "thief.cose": lists(1, ring=THIEF)[0],
        "trust.json": trust_json,
    }  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    def run(trust: str, *more: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "verifier.offline", "--anchor", str(tmp_path / "anchor")]
        command += ["--trust", str(tmp_path / trust), "--fetched-at", "1000"]
        command += ["--max-age", str(forever), *more]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    revocations = ["--revocations", str(tmp_path / "revocations.cose")]
    valid = run("trust.cose", *revocations, text)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert json.loads(valid.stdout)["reason"] == "VALID"
    for trust, expected in (("trust.json", "LIST_UNSIGNED"), ("thief.cose", "LIST_UNKNOWN_ANCHOR")):
        refused = run(trust, *revocations, text)
        assert refused.returncode == 3, refused.stderr
        assert json.loads(refused.stdout)["reason"] == expected
    assert run("trust.cose", text).returncode == 2, "--anchor needs the signed revocations"
