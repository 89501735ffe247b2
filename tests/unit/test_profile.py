"""The cryptographic profile switches each keyed primitive: what one profile makes, only that
profile accepts. The national values are checked against an independent HMAC-SM3 (HMAC built
by hand over gmalg's pure-Python SM3), and the keyring's sealing against the documented key
derivation."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import gmalg
import msgpack
import pytest

from codeengine.code.chain import append_entry, check_chain, entry_mac
from codeengine.code.errors import KeyringError, ProfileMismatch, RecordTampered
from codeengine.code.fencing import NO_FENCE_TOKEN
from codeengine.code.identifiers import parse_identifier
from codeengine.code.keyring import Keyring
from codeengine.code.keyvault import (
    SM4_KEY_LABEL,
    SealedKeyring,
    open_keyring,
    seal_keyring,
)
from codeengine.code.macs import MACAlgorithm, mac_once, prepare
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.national import SM4GCM
from codeengine.code.profile import INTERNATIONAL, NATIONAL, Profile, profile_named
from codeengine.code.pseudonym import alias_hash, licence_hash, pseudonym
from codeengine.code.seal import MACKeyset, open_sealed, record_context, seal
from codeengine.code.secret import Secret
from codeengine.code.sm2 import SM2
from codeengine.code.status import SubjectRecord
from codeengine.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
PROFILES = [INTERNATIONAL, NATIONAL]
IDS = [p.name.value for p in PROFILES]
PEPPER = Secret(bytes(range(32)))
KEK = Secret(bytes(range(100, 132)))
NONCE = bytes(12)
SUBJECT = SubjectId("AAAAAAAAAAAAAAAA")


def _oracle_hmac_sm3(key: bytes, data: bytes) -> bytes:
    """RFC 2104 over gmalg's SM3: shares no code with the engine's HMAC-SM3."""

    def sm3(message: bytes) -> bytes:
        digest = gmalg.SM3()
        digest.update(message)
        return bytes(digest.value())

    block = (sm3(key) if len(key) > 64 else key).ljust(64, b"\0")
    inner = sm3(bytes(b ^ 0x36 for b in block) + data)
    return sm3(bytes(b ^ 0x5C for b in block) + inner)


def _other(profile: Profile) -> Profile:
    return NATIONAL if profile is INTERNATIONAL else INTERNATIONAL


def _keyset(profile: Profile) -> MACKeyset:
    return MACKeyset(b"kid1", {b"kid1": bytes(range(32, 64))}, profile.mac)


def test_hmac_sm3_matches_an_independent_implementation() -> None:
    for key in (b"k" * 32, b"x" * 100):
        data = b"ce/record\x00subject\x00body"
        assert mac_once(MACAlgorithm.HMAC_SM3, key, data) == _oracle_hmac_sm3(key, data)
        assert prepare(MACAlgorithm.HMAC_SM3, key).digest(data) == _oracle_hmac_sm3(key, data)
    # The prepared SHA-256 form is the hmac module's value.
    assert prepare(MACAlgorithm.HMAC_SHA256, b"k").digest(b"m") == mac_once(
        MACAlgorithm.HMAC_SHA256, b"k", b"m"
    )


def test_a_national_pseudonym_is_hmac_sm3_and_differs_from_the_international_one() -> None:
    person = parse_identifier("person", "11010519491231002X", date(2024, 1, 1))
    national = pseudonym(person, PEPPER, NATIONAL.mac)
    expected = _oracle_hmac_sm3(PEPPER.reveal(), b"person\x00" + person.normalised.encode())
    assert national == base64.urlsafe_b64encode(expected[:12]).decode()
    assert national != pseudonym(person, PEPPER, INTERNATIONAL.mac)
    assert pseudonym(person, PEPPER) == pseudonym(person, PEPPER, INTERNATIONAL.mac)


def test_alias_and_licence_hashes_follow_the_profile() -> None:
    national = alias_hash("ssc_card", "K12345678", PEPPER, NATIONAL.mac)
    expected = _oracle_hmac_sm3(PEPPER.reveal(), b"alias\x00ssc_card\x00K12345678")
    assert national == base64.urlsafe_b64encode(expected[:12]).decode()
    assert national != alias_hash("ssc_card", "K12345678", PEPPER, INTERNATIONAL.mac)
    licences = {licence_hash("food", "A1", PEPPER, p.mac) for p in PROFILES}
    assert len(licences) == 2


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_a_record_seal_opens_only_under_its_own_profile(profile: Profile) -> None:
    record = SubjectRecord(SUBJECT, CodeKind.HEALTH, 320100, Colour.GREEN, 1, 0)
    raw = seal(_keyset(profile), record_context(SUBJECT), record.pack())
    body = open_sealed(_keyset(profile), record_context(SUBJECT), raw)
    assert SubjectRecord.unpack(SUBJECT, body) == record
    with pytest.raises(RecordTampered, match="does not match"):
        open_sealed(_keyset(_other(profile)), record_context(SUBJECT), raw)
    # A rotation keeps the keyset's profile.
    rotated = _keyset(profile).with_key(b"kid2", bytes(32))
    assert rotated.mac is profile.mac


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_an_audit_entry_checks_only_under_its_own_profile(profile: Profile) -> None:
    keys = _keyset(profile)
    record = SubjectRecord(SUBJECT, CodeKind.HEALTH, 320100, Colour.GREEN, 1, 0)
    entry = {"op": "create", "actor": "t", "at": 1}
    head, packed, digest = append_entry(keys, record, entry, NO_FENCE_TOKEN)
    assert digest == entry_mac(keys.keys[b"kid1"], b"kid1", SUBJECT, packed, profile.mac)
    assert check_chain(keys, SUBJECT, head, [(packed, digest)]).ok
    crossed = check_chain(_keyset(_other(profile)), SUBJECT, head, [(packed, digest)])
    assert (crossed.ok, crossed.broken_at) == (False, 0)


def _ring() -> Keyring:
    return Keyring.generate_at(1_700_000_000, SM2, lambda n: bytes(range(n)))


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_a_sealed_keyring_records_its_profile_and_opens_only_under_it(profile: Profile) -> None:
    sealed = SealedKeyring.unpack(seal_keyring(_ring(), 2, KEK, NONCE, profile).pack())
    assert sealed.profile is profile.name
    assert open_keyring(sealed, KEK, profile) == _ring()
    with pytest.raises(ProfileMismatch, match=r"crypto\.profile is"):
        open_keyring(sealed, KEK, _other(profile))


def test_stores_seeded_before_profiles_read_as_international() -> None:
    raw = seal_keyring(_ring(), 1, KEK, NONCE, INTERNATIONAL).pack()
    assert set(msgpack.unpackb(raw)) == {"v", "n", "c"}, "the stored form of old stores"
    assert "p" in msgpack.unpackb(seal_keyring(_ring(), 1, KEK, NONCE, NATIONAL).pack())


def test_the_national_keyring_seal_is_sm4_gcm_under_the_documented_key() -> None:
    sealed = seal_keyring(_ring(), 5, KEK, NONCE, NATIONAL)
    key = _oracle_hmac_sm3(KEK.reveal(), SM4_KEY_LABEL)[:16]
    opened = SM4GCM(key).decrypt(NONCE, sealed.ciphertext, b"codeengine keyring v5 national")
    assert Keyring.from_private_jwks(json.loads(opened)) == _ring()


def test_the_profile_field_cannot_be_flipped_without_the_kek() -> None:
    sealed = seal_keyring(_ring(), 5, KEK, NONCE, NATIONAL)
    flipped = replace(sealed, profile=INTERNATIONAL.name)
    with pytest.raises(KeyringError, match="does not open"):
        open_keyring(flipped, KEK, INTERNATIONAL)


def test_the_setting_selects_the_profile_and_refuses_any_other_word() -> None:
    shipped = load_settings(ROOT / "configs" / "engine.toml", env={})
    assert shipped.crypto == load_settings(env={}).crypto
    assert shipped.crypto.selected() is INTERNATIONAL
    chosen = load_settings(env={"CODEENGINE_CRYPTO_PROFILE": "national"})
    assert chosen.crypto.selected() is NATIONAL
    with pytest.raises(SettingsError, match=r"crypto\.profile: 'sm'"):
        load_settings(env={"CODEENGINE_CRYPTO_PROFILE": "sm"})
    assert profile_named("national").suite is SM2
    NATIONAL.check_support()  # this machine's OpenSSL has SM3 and SM4
