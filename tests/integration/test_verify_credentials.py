"""``POST /v1/verify`` answers EU DCCs and SMART Health Cards, through the app and the cluster;
``POST /v1/verify/batch`` refuses them.

The credentials are the public interop material under tests/vectors/interop; the verifier is
configured with their signer certificate and issuer the way ops would (settings naming the
trust files), and its clock is set to a time each credential was valid at.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from codeengine.code.foreign import MAX_SCAN_CHARS
from codeengine.code.token import MAX_TOKEN_CHARS
from codeengine.settings import Settings
from tests.integration.apps import Clock, auth, issuer, verifier
from tests.vectors_loader import shc_example_trust

pytestmark = pytest.mark.cluster

VECTORS = Path(__file__).parents[1] / "vectors" / "interop"
DCC_FILE = VECTORS / "dcc" / "DE" / "2DCode" / "raw" / "1.json"
SHC = VECTORS / "shc" / "examples"
SHC_NOW = 1_700_000_000
CITY = 320100


def _configured(settings: Settings, tmp_path: Path) -> Settings:
    """The session's settings, the verifier trusting the interop signer and issuer."""
    raw = json.loads(DCC_FILE.read_text(encoding="utf-8"))
    dcc = tmp_path / "dcc-trust.json"
    dcc.write_text(json.dumps({"certificates": [raw["TESTCTX"]["CERTIFICATE"]]}))
    shc = tmp_path / "shc-trust.json"
    shc.write_text(json.dumps(shc_example_trust()))
    trusted = replace(settings.verifier, dcc_trust_file=str(dcc), shc_trust_file=str(shc))
    return replace(settings, verifier=trusted)


def _dcc_texts() -> list[str]:
    """Every DCC text of the public test data."""
    texts = []
    for path in VECTORS.glob("dcc/**/*.json"):
        prefix = json.loads(path.read_text(encoding="utf-8")).get("PREFIX")
        if isinstance(prefix, str) and prefix.startswith("HC1:"):
            texts.append(prefix)
    return texts


def _shc_text(example: str) -> str:
    files = sorted(SHC.glob(f"example-{example}-f-qr-code-numeric-value-*.txt"))
    return "\n".join(path.read_text().strip() for path in files)


def test_dcc_and_shc_answer_in_the_verdict_shape(
    settings: Settings, tmp_path: Path, run: Any
) -> None:
    configured = _configured(settings, tmp_path)
    raw = json.loads(DCC_FILE.read_text(encoding="utf-8"))
    dcc_now = int(datetime.fromisoformat(raw["TESTCTX"]["VALIDATIONCLOCK"]).timestamp())

    async def scenario() -> None:
        clock = Clock()
        # The issuer publishes the engine's trust list, which the engine's own codes need; the
        # credentials are answered without it.
        async with issuer(configured, clock), verifier(configured, clock) as client:
            headers = auth(configured, "verify")

            async def verify(text: str) -> tuple[int, dict[str, Any]]:
                body = {"code": text, "terminal": "t-1", "venue": "hall-1", "city": CITY}
                response = await client.post("/v1/verify", json=body, headers=headers)
                answer: dict[str, Any] = await response.json()
                return response.status, answer

            clock.now = float(dcc_now)
            status, answer = await verify(raw["PREFIX"] + "\r\n")
            assert status == 200, answer
            credential = answer.pop("credential")
            assert answer == {
                "valid": True,
                "reason": "VALID",
                "colour": "green",
                "kind": None,
                "city": None,
                "checked_at": dcc_now,
                "as_of": credential["issued_at"],
                "degraded": False,
                "format": "dcc",
            }
            assert (credential["type"], credential["issuer"]) == ("vaccination", "DE")
            assert "Mustermann" not in json.dumps(answer)

            clock.now = float(credential["expires_at"] + 1)
            assert (await verify(raw["PREFIX"]))[1]["reason"] == "EXPIRED"

            clock.now = float(SHC_NOW)
            status, answer = await verify(_shc_text("02"))
            assert (status, answer["reason"], answer["format"]) == (200, "VALID", "shc")
            assert (await verify(_shc_text("03")))[1]["reason"] == "REVOKED"
            assert (await verify("HC2:" + raw["PREFIX"][4:]))[1]["reason"] == "MALFORMED"

            # A batch takes the engine's codes only: another issuer's credential is refused,
            # whatever its length, with the item named and where to send it.
            short_dcc = min(_dcc_texts(), key=len)
            assert len(short_dcc) <= MAX_TOKEN_CHARS
            for text in (short_dcc, raw["PREFIX"], _shc_text("00")):
                body = {"items": [
                    {"code": "CE1:" + "A" * 40, "terminal": "t-1", "city": CITY},
                    {"code": text, "terminal": "t-1", "city": CITY},
                ]}  # fmt: skip
                response = await client.post("/v1/verify/batch", json=body, headers=headers)
                problem = await response.json()
                assert (response.status, problem["reason"]) == (400, "INVALID_FIELD")
                assert problem["detail"].startswith("items[1]: ")
                assert "POST /v1/verify" in problem["detail"]

            status, answer = await verify("shc:/" + "5" * (MAX_SCAN_CHARS + 2))
            assert (status, answer["reason"]) == (400, "INVALID_FIELD")

    run(scenario())
