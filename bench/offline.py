"""Offline verification rate beside the raw signature-verify rate, measured in the same run.

    python -m bench.offline [--rounds 31] [--codes 1000]

The terminal SDK's cost is a decode, the checks and one signature verification; the goal is an
offline rate of at least 0.85 of the raw verify rate of the same library. "Raw" is the library
called directly on bytes prepared in advance: ``nacl.bindings.crypto_sign_open`` for Ed25519,
``cryptography``'s ``verify`` with a DER signature for ES256, and for SM2 ``gmssl-pyx``'s digest
verify on the DER signature and e = SM3(Z_A || M) computed in advance (SM3 of the message is part
of verifying, but Z_A is a per-key constant the SDK computes once too); nothing of this project
runs in it.

Both are timed in alternating rounds of process CPU time (``time.process_time``), so that time
the machine gives to other tenants counts against neither. A shared two-core machine still moves
rates by ±20 % between rounds; the best round of each (the least disturbed, as ``timeit``
advises) gives the ratio, and the medians are saved beside it in
``bench/results/offline-latest.json``.

Other issuers' credentials are measured the same way, through the same SDK configured with their
trust lists: an EU DCC signed ES256 and one signed PS256 (RSA 2048), and a SMART Health Card
(ES256), each from the public interop material under ``tests/vectors/interop`` and verified at a
time it was valid. Their raw rate is the same library's verify of the same signature on the
bytes it covers (the COSE Sig_structure, the JWS signing input), prepared in advance; what the
SDK adds is the prefix, base45 or numeric decoding, inflating, CBOR or JSON parsing, the key
lookup, the key usage, schema, revocation and date checks.
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import gmssl_pyx
import nacl.bindings
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench.record import save_latest
from codeengine.code import dcc, shc
from codeengine.code.base45 import b45decode
from codeengine.code.foreign import ForeignTrust, load_foreign_trust
from codeengine.code.keyring import Keyring
from codeengine.code.model import CodeKind, Colour
from codeengine.code.sm2 import SM2, digest_e, z_a
from codeengine.code.suites import ED25519, ES256, SigningSuite, deterministic_random
from codeengine.code.token import Claims, decode, encode, sig_structure
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations
from verifier.offline import CachedList, OfflineVerifier

GOAL = 0.85
NOW = 1_800_000_000
INTEROP = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "interop"
# The DCC files measured: one signed ES256, one PS256 (an RSA 2048 key).
DCC_FILES = {"DCC ES256": "DE/2DCode/raw/1.json", "DCC PS256": "common/2DCode/raw/CO1.json"}
SHC_EXAMPLE = "00"
SHC_NOW = 1_700_000_000
POLICY = 'version = 1\n[credentials.dcc]\ndefault = "green"\n[credentials.shc]\ndefault = "green"\n'


def _rate(work: Callable[[], object], count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        work()
    return count / (time.process_time() - started)


def _raw_verifier(
    suite: SigningSuite, public: bytes, message: bytes, signature: bytes
) -> Callable[[], object]:
    """The library's own verify call on prepared bytes: the floor for offline verification."""
    if suite is ED25519:
        signed = signature + message
        return lambda: nacl.bindings.crypto_sign_open(signed, public)
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    if suite is SM2:
        digest = digest_e(z_a(public), message)
        return lambda: gmssl_pyx.sm2_verify_sm3_digest(public, digest, der)
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    algorithm = ec.ECDSA(hashes.SHA256())
    return lambda: key.verify(der, message, algorithm)


def measure(suite: SigningSuite, rounds: int, count: int) -> dict[str, float]:
    """Median codes/s of offline verification and of the raw signature check."""
    ring = Keyring.generate_at(NOW - 60, suite, deterministic_random(b"bench-offline"))
    claims = Claims(NOW + 120, NOW, b"\x01" * 6, b"\x02" * 12, CodeKind.HEALTH, 320100,
                    Colour.GREEN, 3)  # fmt: skip
    token = encode(claims, ring.current)
    decoded = decode(token)
    raw_verify = _raw_verifier(
        suite, ring.current.private.public.data, decoded.to_be_signed, decoded.signature
    )
    cached = CachedList(TrustList.from_keyring(ring), Revocations(), NOW)
    sdk = OfflineVerifier(cached, clock=lambda: float(NOW))
    assert sdk.verify(token).valid
    return _compare(lambda: sdk.verify(token), raw_verify, rounds, count)


def _sdk_for(foreign: ForeignTrust, now: int) -> OfflineVerifier:
    ring = Keyring.generate_at(now - 60, ED25519, deterministic_random(b"bench-offline"))
    cached = CachedList(TrustList.from_keyring(ring), Revocations(), now)
    return OfflineVerifier(cached, clock=lambda: float(now), foreign=foreign)


def _compare(
    sdk_verify: Callable[[], object], raw_verify: Callable[[], object], rounds: int, count: int
) -> dict[str, float]:
    offline, raw = [], []
    for _ in range(rounds):
        raw.append(_rate(raw_verify, count))
        offline.append(_rate(sdk_verify, count))
    raw_rate, offline_rate = max(raw), max(offline)
    return {
        "raw_verify_per_s": raw_rate,
        "offline_verify_per_s": offline_rate,
        "ratio": offline_rate / raw_rate,
        "raw_median_per_s": statistics.median(raw),
        "offline_median_per_s": statistics.median(offline),
        "median_ratio": statistics.median(offline) / statistics.median(raw),
        "codes_per_round": count,
    }


def _raw_dcc(sign1: dcc.DCCSign1, certificate: bytes) -> Callable[[], object]:
    key = dcc.DCCSigner.from_der(certificate).certificate.public_key()
    message = sig_structure(sign1.protected, sign1.payload)
    signature = sign1.signature
    if isinstance(key, rsa.RSAPublicKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        return lambda: key.verify(signature, message, pss, hashes.SHA256())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    algorithm = ec.ECDSA(hashes.SHA256())
    return lambda: key.verify(der, message, algorithm)


def measure_dcc(name: str, rounds: int, count: int) -> dict[str, float]:
    """Median DCCs/s of offline verification and of the raw signature check."""
    raw_file = json.loads((INTEROP / "dcc" / DCC_FILES[name]).read_text(encoding="utf-8"))
    text = raw_file["PREFIX"]
    now = int(datetime.fromisoformat(raw_file["TESTCTX"]["VALIDATIONCLOCK"]).timestamp())
    certificate = raw_file["TESTCTX"]["CERTIFICATE"]
    trust = json.dumps({"certificates": [certificate]})
    sdk = _sdk_for(load_foreign_trust(POLICY, dcc_trust=trust), now)
    assert sdk.verify(text).valid
    sign1 = dcc.decode_cose(dcc.decompress(b45decode(dcc.unprefix(text))))
    raw_verify = _raw_dcc(sign1, base64.b64decode(certificate))
    return _compare(lambda: sdk.verify(text), raw_verify, rounds, count)


def measure_shc(rounds: int, count: int) -> dict[str, float]:
    """Median cards/s of offline verification and of the raw signature check."""
    examples = INTEROP / "shc" / "examples"
    well_known = examples / "issuer" / ".well-known"
    issuer = {
        "iss": "https://spec.smarthealth.cards/examples/issuer",
        "jwks": json.loads((well_known / "jwks.json").read_text()),
        "crls": [json.loads(path.read_text()) for path in (well_known / "crl").glob("*.json")],
    }
    foreign = load_foreign_trust(POLICY, shc_trust=json.dumps({"issuers": [issuer]}))
    text = (examples / f"example-{SHC_EXAMPLE}-f-qr-code-numeric-value-0.txt").read_text().strip()
    sdk = _sdk_for(foreign, SHC_NOW)
    assert sdk.verify(text).valid
    token = shc.decode_jws(shc.numeric_to_jws(text))
    key = foreign.shc.issuers[token.issuer].keys[token.kid]
    der = encode_dss_signature(
        int.from_bytes(token.signature[:32], "big"), int.from_bytes(token.signature[32:], "big")
    )
    algorithm = ec.ECDSA(hashes.SHA256())
    message = token.signing_input
    return _compare(
        lambda: sdk.verify(text), lambda: key.verify(der, message, algorithm), rounds, count
    )


def _goal(name: str, ratio: float) -> str:
    """Whether an engine suite met the goal; other issuers' credentials carry none (their
    decoding, a deflated FHIR bundle among it, is theirs to size)."""
    if " " in name:
        return "(no goal: another issuer's format)"
    return "met" if ratio >= GOAL else "NOT met"


def main() -> None:
    """Measure, print a table, save JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--codes", type=int, default=1000, help="per round; a tenth for SM2")
    args = parser.parse_args()
    results = {
        suite.jose_alg: measure(suite, args.rounds, args.codes // divisor)
        for suite, divisor in ((ED25519, 1), (ES256, 1), (SM2, 10))
    }
    for name in DCC_FILES:
        results[name] = measure_dcc(name, args.rounds, args.codes)
    results["SHC ES256"] = measure_shc(args.rounds, args.codes)
    print(f"{'suite':9} {'raw verify/s':>14} {'offline/s':>12} {'ratio':>7} {'median':>7}  "
          f"goal >= {GOAL} (best rounds)")  # fmt: skip
    for name, row in results.items():
        print(f"{name:9} {row['raw_verify_per_s']:14,.0f} {row['offline_verify_per_s']:12,.0f} "
              f"{row['ratio']:7.3f} {row['median_ratio']:7.3f}  "
              f"{_goal(name, row['ratio'])}")  # fmt: skip
    measured = {
        "goal_ratio": GOAL,
        "rounds": args.rounds,
        "codes_per_round": args.codes,
        "clock": "process CPU time; rates from the best round of each, medians beside them",
        "results": results,
    }
    save_latest("offline", "bench.offline", {"processor": platform.machine()}, measured)


if __name__ == "__main__":
    main()
