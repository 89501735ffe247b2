"""SM3, HMAC-SM3 and SM4-GCM: the standards' examples, and a second implementation for each."""

from __future__ import annotations

import hmac as std_hmac
import subprocess

import gmalg
import gmssl_pyx
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from codeengine.code.errors import CryptoUnavailable, Reason
from codeengine.code.national import (
    HMACSM3,
    SM3_BYTES,
    SM4_TAG_BYTES,
    SM4GCM,
    hmac_sm3,
    national_support,
    sm3,
)
from tests.vectors_loader import Case, case_id, cases


def _gmalg_sm3(data: bytes) -> bytes:
    digest = gmalg.SM3()
    digest.update(data)
    value: bytes = digest.value()
    return value


@pytest.mark.parametrize("case", cases("national", lambda c: c["kind"] == "sm3"), ids=case_id)
def test_sm3_gives_the_standard_digest(case: Case) -> None:
    message = bytes.fromhex(case["message_hex"])
    assert sm3(message).hex() == case["digest"]
    assert _gmalg_sm3(message).hex() == case["digest"]


def test_sm3_examples_are_the_messages_the_standard_names() -> None:
    messages = {c["id"]: bytes.fromhex(c["message_hex"]) for c in cases("national")
                if c["kind"] == "sm3"}  # fmt: skip
    assert messages == {"sm3-abc": b"abc", "sm3-abcd-x16": b"abcd" * 16}


def test_sm3_agrees_with_the_openssl_command_line() -> None:
    answer = subprocess.run(
        ["openssl", "dgst", "-sm3", "-r"], input=b"abc", capture_output=True, check=True
    )
    assert answer.stdout.split()[0].decode() == sm3(b"abc").hex()


def test_sm4_block_example() -> None:
    (case,) = cases("national", lambda c: c["kind"] == "sm4")
    key = bytes.fromhex(case["key"])
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    block = encryptor.update(bytes.fromhex(case["plaintext"])) + encryptor.finalize()
    assert block.hex() == case["ciphertext"]
    assert gmalg.SM4(key).encrypt(bytes.fromhex(case["plaintext"])).hex() == case["ciphertext"]


def test_sm4_gcm_gives_the_rfc_8998_answer_and_opens_it() -> None:
    (case,) = cases("national", lambda c: c["kind"] == "sm4-gcm")
    cipher = SM4GCM(bytes.fromhex(case["key"]))
    nonce, aad = bytes.fromhex(case["nonce"]), bytes.fromhex(case["aad"])
    plaintext = bytes.fromhex(case["plaintext"])
    sealed = cipher.encrypt(nonce, plaintext, aad)
    assert sealed.hex() == case["ciphertext"] + case["tag"]
    assert cipher.decrypt(nonce, sealed, aad) == plaintext


def test_sm4_gcm_agrees_with_gmssl() -> None:
    key, nonce, aad = bytes(range(16)), bytes(range(12)), b"codeengine keyring v7"
    sealed = SM4GCM(key).encrypt(nonce, b"a keyring's JWKS", aad)
    assert gmssl_pyx.sm4_gcm_decrypt(key, nonce, aad, sealed[:-16], sealed[-16:]) == (
        b"a keyring's JWKS"
    )


@pytest.mark.parametrize(
    "change",
    ["ciphertext", "tag", "nonce", "aad", "truncated"],
)
def test_sm4_gcm_refuses_anything_altered(change: str) -> None:
    key, nonce, aad = b"k" * 16, b"n" * 12, b"version 3"
    sealed = SM4GCM(key).encrypt(nonce, b"secret scalars", aad)
    if change == "ciphertext":
        sealed = bytes((sealed[0] ^ 1,)) + sealed[1:]
    elif change == "tag":
        sealed = sealed[:-1] + bytes((sealed[-1] ^ 1,))
    elif change == "nonce":
        nonce = b"m" * 12
    elif change == "aad":
        aad = b"version 4"
    else:
        sealed = sealed[: SM4_TAG_BYTES - 1]
    with pytest.raises(InvalidTag):
        SM4GCM(key).decrypt(nonce, sealed, aad)


def test_sm4_gcm_checks_key_and_nonce_sizes_and_masks_the_key() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        SM4GCM(b"k" * 32)
    with pytest.raises(ValueError, match="12 bytes"):
        SM4GCM(b"k" * 16).encrypt(b"n" * 16, b"data", None)
    assert "k" * 16 not in repr(SM4GCM(b"k" * 16))


@given(key=st.binary(min_size=1, max_size=100), data=st.binary(max_size=300))
def test_hmac_sm3_is_rfc_2104_over_sm3(key: bytes, data: bytes) -> None:
    # RFC 2104 written out over an independent SM3 (gmalg), with SM3's 64-byte block.
    block = _gmalg_sm3(key) if len(key) > 64 else key
    block = block.ljust(64, b"\x00")
    inner = _gmalg_sm3(bytes(b ^ 0x36 for b in block) + data)
    expected = _gmalg_sm3(bytes(b ^ 0x5C for b in block) + inner)
    assert hmac_sm3(key, data) == expected
    assert HMACSM3(key).digest(data) == expected
    assert len(expected) == SM3_BYTES


def test_hmac_sm3_agrees_with_gmssl_and_differs_per_key() -> None:
    key = b"pseudonym key of 32 bytes length"
    assert hmac_sm3(key, b"subject") == gmssl_pyx.sm3_hmac(key, b"subject")
    prepared = HMACSM3(key)
    assert prepared.digest(b"one") == hmac_sm3(key, b"one")
    assert prepared.digest(b"two") == hmac_sm3(key, b"two")
    assert hmac_sm3(b"another key", b"one") != hmac_sm3(key, b"one")
    assert not std_hmac.compare_digest(prepared.digest(b"one"), prepared.digest(b"two"))
    assert key.decode() not in repr(prepared)


def test_national_support_passes_on_this_build() -> None:
    national_support()


def test_national_support_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # A build without SM: the backend's own answers say no, as OpenSSL's no-sm3/no-sm4 do.
    from cryptography.hazmat.backends.openssl import backend

    monkeypatch.setattr(backend, "hash_supported", lambda algorithm: False)
    monkeypatch.setattr(backend, "cipher_supported", lambda cipher, mode: False)
    with pytest.raises(CryptoUnavailable) as caught:
        national_support()
    assert "SM3" in str(caught.value) and "SM4-GCM" in str(caught.value)
    assert "OpenSSL" in str(caught.value)
    assert caught.value.reason is Reason.INTERNAL
