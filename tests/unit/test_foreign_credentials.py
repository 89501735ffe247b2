"""Other issuers' credentials in the terminal SDK: the verdict shape, the colour policy, the CLI.

The DCC and SMART Health Card material is the public interop data under
tests/vectors/interop; the engine's own codes come from a generated keyring, to show that one
terminal answers all three.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from codeengine.code.credential import ColourPolicy, CredentialVerdict
from codeengine.code.dcc import DCCTrustList
from codeengine.code.keyring import Keyring
from codeengine.code.model import CodeKind, Colour
from codeengine.code.shipped import shipped
from codeengine.code.suites import ED25519, deterministic_random
from codeengine.code.token import Claims, encode
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations, Verdict
from verifier.offline import CachedList, OfflineVerifier, load_foreign_trust
from verifier.offline.__main__ import main

VECTORS = Path(__file__).parents[1] / "vectors" / "interop"
DCC = VECTORS / "dcc"
SHC = VECTORS / "shc" / "examples"
SHC_NOW = 1_700_000_000
POLICY = """
version = 1
[credentials.dcc]
vaccination = "green"
test = "yellow"
default = "grey"
[credentials.shc]
immunization = "green"
default = "yellow"
"""


def _raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DCC / name).read_text(encoding="utf-8"))
    return data


def _clock(raw: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(raw["TESTCTX"]["VALIDATIONCLOCK"]).timestamp())


def _dcc_trust(*names: str) -> str:
    return json.dumps({"certificates": [_raw(n)["TESTCTX"]["CERTIFICATE"] for n in names]})


def _shc_trust() -> str:
    well_known = SHC / "issuer" / ".well-known"
    crl = json.loads(next((well_known / "crl").glob("*.json")).read_text())
    issuer = {
        "iss": "https://spec.smarthealth.cards/examples/issuer",
        "jwks": json.loads((well_known / "jwks.json").read_text()),
        "crls": [crl],
    }
    return json.dumps({"issuers": [issuer]})


def _shc_text(example: str) -> str:
    files = sorted(SHC.glob(f"example-{example}-f-qr-code-numeric-value-*.txt"))
    return "\n".join(path.read_text().strip() for path in files)


RING = Keyring.generate_at(SHC_NOW - 1000, ED25519, deterministic_random(b"foreign"))


def _sdk(now: int, *, policy: str = POLICY, dcc: tuple[str, ...] = ("DE/2DCode/raw/1.json",),
         fetched_at: int | None = None) -> OfflineVerifier:  # fmt: skip
    foreign = load_foreign_trust(policy, dcc_trust=_dcc_trust(*dcc), shc_trust=_shc_trust())
    cached = CachedList(
        TrustList.from_keyring(RING), Revocations(), now if fetched_at is None else fetched_at
    )
    return OfflineVerifier(cached, clock=lambda: float(now), foreign=foreign)


def _credential_verdict(verdict: Verdict | CredentialVerdict) -> CredentialVerdict:
    assert isinstance(verdict, CredentialVerdict)
    return verdict


def test_a_dcc_is_answered_in_the_verdict_shape_with_its_format_and_no_personal_data() -> None:
    raw = _raw("DE/2DCode/raw/1.json")
    verdict = _credential_verdict(_sdk(_clock(raw)).verify(raw["PREFIX"] + "\r\n"))
    answer = verdict.to_json()
    assert answer["valid"] is True and answer["reason"] == "VALID"
    assert answer["colour"] == "green"
    assert answer["format"] == "dcc"
    assert answer["credential"] == {
        "type": "vaccination",
        "issued_at": verdict.as_of,
        "expires_at": answer["credential"]["expires_at"],  # type: ignore[index]
        "issuer": "DE",
    }
    assert answer["as_of"] is not None and answer["as_of"] < answer["checked_at"]  # type: ignore[operator]
    text = json.dumps(answer)
    for personal in ("Mustermann", "MUSTERMANN", "Erika", "1964-08-12", "URN:UVCI"):
        assert personal not in text


def test_the_colour_is_the_policys_for_the_type() -> None:
    test_raw = _raw("IT/2DCode/raw/3.json")
    verdict = _sdk(_clock(test_raw), dcc=("IT/2DCode/raw/3.json",)).verify(test_raw["PREFIX"])
    assert _credential_verdict(verdict).credential is not None
    assert (verdict.reason, verdict.colour) == ("VALID", Colour.YELLOW)
    recovery = _raw("IT/2DCode/raw/2.json")
    verdict = _sdk(_clock(recovery), dcc=("IT/2DCode/raw/2.json",)).verify(recovery["PREFIX"])
    assert (verdict.reason, verdict.colour) == ("VALID", Colour.GREY), "the default"


def test_an_expired_dcc_says_what_it_was_but_shows_no_colour() -> None:
    raw = _raw("DE/2DCode/raw/1.json")
    first = _credential_verdict(_sdk(_clock(raw)).verify(raw["PREFIX"]))
    assert first.credential is not None and first.credential.expires_at is not None
    late = _credential_verdict(_sdk(first.credential.expires_at + 1).verify(raw["PREFIX"]))
    assert (late.valid, late.reason, late.colour) == (False, "EXPIRED", None)
    assert late.credential == first.credential


def test_a_dcc_whose_signer_is_not_trusted_echoes_nothing() -> None:
    raw = _raw("DE/2DCode/raw/1.json")
    verdict = _sdk(_clock(raw), dcc=("AT/2DCode/raw/1.json",)).verify(raw["PREFIX"])
    assert (verdict.reason, _credential_verdict(verdict).credential) == ("UNKNOWN_KID", None)


def test_a_signer_outside_its_key_usage_is_an_unknown_key() -> None:
    raw = _raw("common/2DCode/raw/CO6.json")
    verdict = _sdk(_clock(raw), dcc=("common/2DCode/raw/CO6.json",)).verify(raw["PREFIX"])
    assert verdict.reason == "UNKNOWN_KID"
    assert _credential_verdict(verdict).credential is not None, "the signature held"


def test_a_wrong_prefix_is_the_engines_malformed() -> None:
    raw = _raw("common/2DCode/raw/H2.json")
    assert _sdk(_clock(raw)).verify(raw["PREFIX"]).reason == "MALFORMED"


def test_shc_cards_verify_and_the_revoked_one_says_so() -> None:
    sdk = _sdk(SHC_NOW)
    valid = _credential_verdict(sdk.verify(_shc_text("02")))
    assert (valid.reason, valid.colour, valid.format) == ("VALID", Colour.YELLOW, "shc")
    revoked = _credential_verdict(sdk.verify(_shc_text("03")))
    assert (revoked.valid, revoked.reason, revoked.colour) == (False, "REVOKED", None)
    assert revoked.credential is not None
    assert revoked.credential.issuer == "https://spec.smarthealth.cards/examples/issuer"


def test_a_format_the_policy_has_no_table_for_is_not_read() -> None:
    only_dcc = 'version = 1\n[credentials.dcc]\ndefault = "green"\n'
    verdict = _sdk(SHC_NOW, policy=only_dcc).verify(_shc_text("00"))
    assert (verdict.reason, _credential_verdict(verdict).format) == ("MALFORMED", "shc")


def test_engine_codes_still_answer_as_before_and_credentials_ignore_the_lists_age() -> None:
    claims = Claims(SHC_NOW + 120, SHC_NOW, b"\x01" * 6, b"\x07" * 12, CodeKind.HEALTH, 320500,
                    Colour.RED, 4)  # fmt: skip
    token = encode(claims, RING.current)
    sdk = _sdk(SHC_NOW)
    verdict = sdk.verify(token)
    assert isinstance(verdict, Verdict)
    assert (verdict.reason, verdict.colour) == ("VALID", Colour.RED)
    stale = _sdk(SHC_NOW, fetched_at=SHC_NOW - 10 * 86400)
    assert stale.verify(token).reason == "TRUST_LIST_STALE"
    assert stale.verify(_shc_text("00")).reason == "VALID"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"version": 1, "credentials": {"vds": {"default": "green"}}}, "credentials.vds"),
        ({"version": 1, "credentials": {"dcc": {"test": "blue", "default": "green"}}}, "test"),
        ({"version": 1, "credentials": {"dcc": {"test": "green"}}}, "default: missing"),
        ({"version": 2, "credentials": {}}, "version must be 1"),
        ({"version": 1, "colours": {}}, "unknown key 'colours'"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ColourPolicy.from_document(document)


def test_the_shipped_policy_gives_every_type_a_colour() -> None:
    foreign = load_foreign_trust(shipped("credentials.toml").read_text(encoding="utf-8"))
    assert {fmt.value for fmt in foreign.policy.colours} == {"dcc", "shc"}
    assert len(foreign.dcc) == 0 and len(foreign.shc) == 0


def test_a_dcc_trust_list_refuses_what_is_not_a_certificate() -> None:
    from codeengine.code.errors import KeyringError

    with pytest.raises(KeyringError, match="base64"):
        DCCTrustList.from_json('{"certificates": ["not base64!"]}')
    with pytest.raises(KeyringError, match=r"X\.509"):
        DCCTrustList.from_json(json.dumps({"certificates": [base64.b64encode(b"x").decode()]}))


def test_a_dcc_trust_list_refuses_an_rsa_key_below_2048_bits() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from codeengine.code.errors import KeyringError

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "DSC")])
    moment = datetime(2021, 5, 1)
    certificate = (
        x509.CertificateBuilder(name, name, key.public_key(), 1, moment, moment)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(KeyringError, match="2048"):
        DCCTrustList.from_json(
            json.dumps({"certificates": [base64.b64encode(certificate).decode()]})
        )


def test_the_command_line_verifies_a_dcc_as_of_a_given_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = _raw("DE/2DCode/raw/1.json")
    trust = tmp_path / "trust.json"
    trust.write_text(TrustList.from_keyring(RING).to_json())
    dcc = tmp_path / "dcc-trust.json"
    dcc.write_text(_dcc_trust("DE/2DCode/raw/1.json"))
    at = str(_clock(raw))
    argv = ["--trust", str(trust), "--fetched-at", at, "--dcc-trust", str(dcc), "--at", at]
    assert main([*argv, raw["PREFIX"]]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["reason"], answer["format"], answer["colour"]) == ("VALID", "dcc", "green")
    assert main([*argv, raw["PREFIX"][:-4]]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "MALFORMED"
