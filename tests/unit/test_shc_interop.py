"""SMART Health Cards: the specification's worked examples (tests/vectors/interop/shc).

Examples 00-02 verify against the example issuer's key set; example 03's rid is in the issuer's
revocation list for cards issued before a time after its nbf, so it answers revoked. Every
other failure gives the engine's reason it is mapped to.
"""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codeengine.code.errors import Reason, VerificationError
from codeengine.code.shc import (
    SHCTrustList,
    decode_jws,
    numeric_to_jws,
    verify_shc_at,
)

ROOT = Path(__file__).parents[1] / "vectors" / "interop" / "shc" / "examples"
ISSUER = "https://spec.smarthealth.cards/examples/issuer"
KID = "3Kfdg-XwP-7gXyywtUfUADwBumDOPKMQx-iELL11W9s"
# Between the examples' nbf (1687450764) and example 03's exp (1718986764).
NOW = 1_700_000_000


def _jwks() -> Any:
    return json.loads((ROOT / "issuer" / ".well-known" / "jwks.json").read_text())


def _crl() -> Any:
    return json.loads((ROOT / "issuer" / ".well-known" / "crl" / f"{KID}.json").read_text())


def _trust(*, crls: list[Any] | None = None, iss: str = ISSUER) -> SHCTrustList:
    jwks = _jwks()
    if crls == []:
        # A key set that announces no revocation list, so that none is needed.
        jwks["keys"] = [{k: v for k, v in key.items() if k != "crlVersion"} for key in jwks["keys"]]
    entry = {"iss": iss, "jwks": jwks, "crls": [_crl()] if crls is None else crls}
    return SHCTrustList.from_json(json.dumps({"issuers": [entry]}))


def _qr(example: str) -> str:
    """The example's QR text: its chunks, one per line, as a terminal scanning them all reads."""
    files = sorted(ROOT.glob(f"example-{example}-f-qr-code-numeric-value-*.txt"))
    return "\n".join(path.read_text().strip() for path in files)


def _reason(text: str, trust: SHCTrustList, now: int = NOW) -> str:
    try:
        verify_shc_at(text, trust, now)
    except VerificationError as exc:
        return exc.reason.value
    return Reason.VALID.value


@pytest.mark.parametrize("example", ["00", "01", "02"])
def test_the_examples_verify(example: str) -> None:
    credential = verify_shc_at(_qr(example), _trust(), NOW)
    payload = json.loads((ROOT / f"example-{example}-b-jws-payload-expanded.json").read_text())
    assert credential.format == "shc"
    assert credential.issuer == ISSUER
    assert credential.issued_at == int(payload["nbf"])
    assert credential.type == "health-card"


@pytest.mark.parametrize("example", ["00", "01", "02", "03"])
def test_the_numeric_qr_text_is_the_examples_jws(example: str) -> None:
    jws = (ROOT / f"example-{example}-d-jws.txt").read_text().strip()
    assert numeric_to_jws(_qr(example)) == jws


def test_example_03_answers_revoked() -> None:
    assert _reason(_qr("03"), _trust()) == "REVOKED"


def test_a_rid_revoked_up_to_a_time_spares_cards_issued_after_it() -> None:
    token = decode_jws(numeric_to_jws(_qr("03")))
    assert token.rid is not None
    before_issue = {"kid": KID, "method": "rid", "ctr": 2, "rids": [f"{token.rid}.1687450000"]}
    assert _reason(_qr("03"), _trust(crls=[before_issue])) == "VALID"
    for_ever = {**before_issue, "rids": [token.rid]}
    assert _reason(_qr("03"), _trust(crls=[for_ever])) == "REVOKED"


def test_example_03_without_its_revocation_expires_at_its_exp() -> None:
    token = decode_jws(numeric_to_jws(_qr("03")))
    assert token.exp is not None
    trust = _trust(crls=[])
    assert _reason(_qr("03"), trust, int(token.exp)) == "VALID"
    assert _reason(_qr("03"), trust, int(token.exp) + 1) == "EXPIRED"


def test_a_card_before_its_nbf_is_not_yet_valid() -> None:
    assert _reason(_qr("00"), _trust(), 1_687_450_000) == "NOT_YET_VALID"


def test_an_issuer_not_in_the_trust_list_is_an_unknown_key() -> None:
    assert _reason(_qr("00"), _trust(iss="https://other.example/issuer")) == "UNKNOWN_KID"


def _jws_parts(example: str) -> list[str]:
    return numeric_to_jws(_qr(example)).split(".")


def _numeric(jws: str) -> str:
    return "shc:/" + "".join(f"{ord(c) - 45:02d}" for c in jws)


def test_a_changed_signature_is_a_bad_signature() -> None:
    header, payload, signature = _jws_parts("00")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[5] ^= 1
    changed = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert _reason(_numeric(f"{header}.{payload}.{changed}"), _trust()) == "BAD_SIGNATURE"


def test_a_signature_moved_to_another_card_is_a_bad_signature() -> None:
    header, payload, _ = _jws_parts("00")
    other = _jws_parts("01")[2]
    assert _reason(_numeric(f"{header}.{payload}.{other}"), _trust()) == "BAD_SIGNATURE"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_another_algorithm_is_unsupported() -> None:
    header, payload, signature = _jws_parts("00")
    fields = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    forged = _b64(json.dumps({**fields, "alg": "HS256"}).encode())
    assert _reason(_numeric(f"{forged}.{payload}.{signature}"), _trust()) == "UNSUPPORTED_ALG"


def test_an_uncompressed_payload_is_malformed() -> None:
    header, payload, signature = _jws_parts("00")
    fields = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    plain = {key: value for key, value in fields.items() if key != "zip"}
    text = _numeric(f"{_b64(json.dumps(plain).encode())}.{payload}.{signature}")
    assert _reason(text, _trust()) == "MALFORMED"


def test_a_payload_that_inflates_beyond_the_limit_is_malformed() -> None:
    header, _, signature = _jws_parts("00")
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = deflater.compress(b" " * 1_000_000) + deflater.flush()
    assert _reason(_numeric(f"{header}.{_b64(bomb)}.{signature}"), _trust()) == "MALFORMED"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("shc:/", id="empty"),
        pytest.param("shc:/567", id="odd-digits"),
        pytest.param("shc:/99", id="pair-out-of-range"),
        pytest.param("shc:/5676x9", id="not-digits"),
        pytest.param("shc:/1/2/5676", id="a-chunk-missing"),
        pytest.param("shc:/1/2/56\nshc:/1/2/76", id="a-chunk-twice"),
        pytest.param("shc:/1/2/56\nshc:/2/3/76", id="totals-disagree"),
        pytest.param("shc:/0/1/56", id="chunk-zero"),
    ],
)
def test_a_numeric_text_that_is_not_a_card_is_malformed(text: str) -> None:
    assert _reason(text, _trust()) == "MALFORMED"


def test_split_chunks_may_be_scanned_in_any_order() -> None:
    lines = _qr("02").splitlines()
    assert len(lines) == 3
    assert _reason("\n".join(reversed(lines)), _trust()) == "VALID"


def test_a_trust_list_without_a_usable_key_is_refused() -> None:
    from codeengine.code.errors import KeyringError

    bad = {"iss": ISSUER, "jwks": {"keys": [{"kid": "k", "kty": "OKP", "crv": "Ed25519"}]}}
    with pytest.raises(KeyringError, match="no ES256 key"):
        SHCTrustList.from_json(json.dumps({"issuers": [bad]}))
    with pytest.raises(KeyringError, match="rid"):
        _trust(crls=[{"kid": KID, "method": "other", "rids": []}])


def test_a_key_set_announcing_a_revocation_list_needs_it_current() -> None:
    from codeengine.code.errors import KeyringError

    entry = {"iss": ISSUER, "jwks": _jwks(), "crls": []}
    with pytest.raises(KeyringError, match="crlVersion 1"):
        SHCTrustList.from_json(json.dumps({"issuers": [entry]}))
    older = {**_crl(), "ctr": 0}
    with pytest.raises(KeyringError, match="older"):
        SHCTrustList.from_json(json.dumps({"issuers": [{**entry, "crls": [older]}]}))


@given(st.text(alphabet=st.characters(min_codepoint=45, max_codepoint=122), min_size=1))
def test_the_numeric_encoding_reads_back_every_jws_character(text: str) -> None:
    assert numeric_to_jws(_numeric(text)) == text


@pytest.mark.parametrize("pair", [78, 85, 99])
def test_a_pair_above_77_is_malformed_wherever_it_is(pair: int) -> None:
    for digits in (f"{pair}", f"00{pair}", f"{pair}00", f"1212{pair}12"):
        with pytest.raises(VerificationError, match="outside"):
            numeric_to_jws("shc:/" + digits)
