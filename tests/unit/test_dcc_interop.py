"""The EU DCC test data (tests/vectors/interop/dcc): every verification EXPECTED* result is met.

Each raw file names, per step of the hcert chain, whether that step succeeds on its data; the
steps this engine performs (unprefix, base45, zlib, decode, signature with the file's signer
certificate, expiry at its validation clock, key usage, schema) are each run alone on the
file's fields, as the test data's README describes, and the whole chain once more through
``verify_dcc_at`` where the file expects every step to succeed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from codeengine.code.base45 import b45decode
from codeengine.code.cbor import Tag
from codeengine.code.dcc import (
    DCCSigner,
    DCCTrustList,
    check_key_usage,
    check_signature,
    check_window_at,
    decode_cose,
    decompress,
    parse_claims,
    parse_hcert,
    unprefix,
    verify_dcc_at,
)
from codeengine.code.dccschema import check_schema
from codeengine.code.errors import VerificationError

ROOT = Path(__file__).parents[1] / "vectors" / "interop" / "dcc"
FILES = sorted(ROOT.glob("*/2DCode/raw/*.json"))
# The EXPECTED* results about verifying; the picture, encoding and JSON-object ones are about
# making a code, or about reading a PNG, which a verifier of scanned text never does.
CHECKED = (
    "EXPECTEDUNPREFIX",
    "EXPECTEDB45DECODE",
    "EXPECTEDCOMPRESSION",
    "EXPECTEDDECODE",
    "EXPECTEDVALIDJSON",
    "EXPECTEDVERIFY",
    "EXPECTEDEXPIRATIONCHECK",
    "EXPECTEDKEYUSAGE",
    "EXPECTEDSCHEMAVALIDATION",
)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _name(path: Path) -> str:
    return f"{path.parts[-4]}/{path.stem}"


def _clock(raw: Mapping[str, Any]) -> int:
    return int(datetime.fromisoformat(raw["TESTCTX"]["VALIDATIONCLOCK"]).timestamp())


def _trust(raw: Mapping[str, Any]) -> DCCTrustList:
    der = base64.b64decode(raw["TESTCTX"]["CERTIFICATE"])
    return DCCTrustList.of([DCCSigner.from_der(der)])


def _cose(raw: Mapping[str, Any]) -> bytes:
    if "COSE" in raw:
        return bytes.fromhex(raw["COSE"])
    return decompress(b45decode(unprefix(raw["PREFIX"])))


def _plain(value: object) -> object:
    """A decoded value as JSON would hold it: tags dropped, integral floats as integers."""
    if isinstance(value, Tag):
        return _plain(value.value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _same(a: object, b: object) -> bool:
    """Equal as JSON: map order and int-or-float spellings do not count (README, notes 2-3)."""
    return json.dumps(_plain(a), sort_keys=True) == json.dumps(_plain(b), sort_keys=True)


def _unprefix(raw: Mapping[str, Any]) -> bool:
    return unprefix(raw["PREFIX"]) == str(raw["BASE45"])


def _b45decode(raw: Mapping[str, Any]) -> bool:
    return b45decode(raw["BASE45"]) == bytes.fromhex(raw["COMPRESSED"])


def _compression(raw: Mapping[str, Any]) -> bool:
    return decompress(bytes.fromhex(raw["COMPRESSED"])) == bytes.fromhex(raw["COSE"])


def _decode(raw: Mapping[str, Any]) -> bool:
    hcert = parse_hcert(bytes.fromhex(raw["CBOR"]))
    if "JSON" in raw and not _same(hcert, raw["JSON"]):
        return False
    if "COSE" in raw:
        return _same(parse_claims(decode_cose(_cose(raw)).payload).hcert, hcert)
    return True


def _valid_json(raw: Mapping[str, Any]) -> bool:
    cose = decompress(b45decode(unprefix(raw["PREFIX"])))
    return _same(parse_claims(decode_cose(cose).payload).hcert, raw["JSON"])


def _verify(raw: Mapping[str, Any]) -> bool:
    sign1 = decode_cose(_cose(raw))
    parse_claims(sign1.payload)
    check_signature(sign1, _trust(raw))
    return True


def _expiration(raw: Mapping[str, Any]) -> bool:
    check_window_at(parse_claims(decode_cose(_cose(raw)).payload), _clock(raw))
    return True


def _key_usage(raw: Mapping[str, Any]) -> bool:
    sign1 = decode_cose(_cose(raw))
    check_key_usage(check_signature(sign1, _trust(raw)), parse_claims(sign1.payload))
    return True


def _schema(raw: Mapping[str, Any]) -> bool:
    check_schema(parse_hcert(bytes.fromhex(raw["CBOR"])) if "CBOR" in raw else raw["JSON"])
    return True


# The fields each step reads (the README's "mandatory fields"); a file without them skips the step,
# as the README's test procedure says. PREFIX stands in for COSE, decoding the whole chain.
NEEDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "EXPECTEDUNPREFIX": (("PREFIX",), ("BASE45",)),
    "EXPECTEDB45DECODE": (("BASE45",), ("COMPRESSED",)),
    "EXPECTEDCOMPRESSION": (("COMPRESSED",), ("COSE",)),
    "EXPECTEDDECODE": (("CBOR",),),
    "EXPECTEDVALIDJSON": (("PREFIX",), ("JSON",)),
    "EXPECTEDVERIFY": (("COSE", "PREFIX"), ("TESTCTX.CERTIFICATE",)),
    "EXPECTEDEXPIRATIONCHECK": (("COSE", "PREFIX"), ("TESTCTX.VALIDATIONCLOCK",)),
    "EXPECTEDKEYUSAGE": (("COSE", "PREFIX"), ("TESTCTX.CERTIFICATE",)),
    "EXPECTEDSCHEMAVALIDATION": (("CBOR", "JSON"),),
}


def _has(raw: Mapping[str, Any], field: str) -> bool:
    if field.startswith("TESTCTX."):
        return field.removeprefix("TESTCTX.") in raw.get("TESTCTX", {})
    return field in raw


STEPS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "EXPECTEDUNPREFIX": _unprefix,
    "EXPECTEDB45DECODE": _b45decode,
    "EXPECTEDCOMPRESSION": _compression,
    "EXPECTEDDECODE": _decode,
    "EXPECTEDVALIDJSON": _valid_json,
    "EXPECTEDVERIFY": _verify,
    "EXPECTEDEXPIRATIONCHECK": _expiration,
    "EXPECTEDKEYUSAGE": _key_usage,
    "EXPECTEDSCHEMAVALIDATION": _schema,
}

CASES = [
    pytest.param(path, expectation, expected, id=f"{_name(path)}:{expectation[8:]}")
    for path in FILES
    for expectation, expected in _load(path).get("EXPECTEDRESULTS", {}).items()
    if expectation in CHECKED
]


def test_the_copied_suite_is_all_there() -> None:
    # The sample copied from the public suite; the full suite may be dropped in beside it.
    assert len(FILES) >= 49
    assert {path.parts[-4] for path in FILES} >= {"common", "AT", "DE", "IT"}
    assert len(CASES) >= 147


@pytest.mark.parametrize(("path", "expectation", "expected"), CASES)
def test_each_expected_result_is_met(path: Path, expectation: str, expected: bool) -> None:
    raw = _load(path)
    missing = [need for need in NEEDS[expectation] if not any(_has(raw, f) for f in need)]
    if missing:
        pytest.skip(f"the file lacks {missing}, which this step reads")
    try:
        outcome = STEPS[expectation](raw)
    except VerificationError:
        outcome = False
    assert outcome is expected, raw["TESTCTX"].get("DESCRIPTION")


WHOLE = [
    pytest.param(path, id=_name(path))
    for path in FILES
    if (results := _load(path).get("EXPECTEDRESULTS", {})).get("EXPECTEDVERIFY")
    and results.get("EXPECTEDSCHEMAVALIDATION")
    and all(results.get(step, True) for step in CHECKED)
    and "PREFIX" in _load(path)
    and "CERTIFICATE" in _load(path).get("TESTCTX", {})
]


@pytest.mark.parametrize("path", WHOLE)
def test_the_whole_chain_verifies_what_every_step_passes(path: Path) -> None:
    raw = _load(path)
    claims = parse_claims(decode_cose(_cose(raw)).payload)
    credential = verify_dcc_at(raw["PREFIX"], _trust(raw), claims.iat)
    assert credential.format == "dcc"
    assert credential.type in {"vaccination", "test", "recovery"}
    assert (credential.issued_at, credential.expires_at) == (claims.iat, claims.exp)
    assert credential.issuer == claims.issuer
