"""The terminal SDK installed as a terminal installs it: the wheel with ``--no-deps`` and the
``terminal`` extra's list (docs/sdk.md), in a fresh virtualenv outside the checkout, with none of
the server's libraries, verifies known-answer codes with ``python -m verifier.offline``.

No cluster and no service: the terminal is offline. The known-answer codes are dated, so the
command line is given the lists' fetch time and the time to verify at (``--at``). One code goes
in as a QR image too, which takes the image reader of the extra.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from codeengine.code.qr import QRFormat, render
from tests.e2e.wheel import HANG_GUARD_S, build_wheel, fresh_venv, run_ok, timed
from tests.vectors_loader import Case, cases, load, shc_example_trust
from tools.layers import COLUMNAR, SERVER_ONLY

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
# One code per suite and per kind of answer.
CHOSEN = (
    "valid-ed25519-health-green",
    "valid-es256-health-yellow",
    "valid-sm2-fused-red",
    "bad-signature-tampered-payload",
    "bad-signature-sm2-flipped-bit",
    "unknown-kid",
    "expired",
    "not-yet-valid",
    "malformed-prefix-hc1",
)
# Libraries the services import that a terminal must not carry (the SDK's own are the extra).
SERVICE_DISTRIBUTIONS = frozenset(
    {"aiohttp", "hiredis", "httptools", "uvloop", "prometheus-client", "redis"}
    | {"msgspec", "multidict", "qrcode", "chdb-core", "clickhouse-connect"}
)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _terminal_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements: list[str] = project["optional-dependencies"]["terminal"]
    return requirements


def _verify(
    python: Path, env: dict[str, str], cwd: Path, trust: Path, now: int, code: list[str]
) -> tuple[int, dict[str, Any]]:
    argv = [str(python), "-m", "verifier.offline", "--trust", str(trust)]
    argv += ["--fetched-at", str(now), "--at", str(now), *code]
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False
    )
    assert done.returncode in (0, 1), (argv, done.stdout[-2000:], done.stderr[-2000:])
    verdict: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, verdict


def _credentials(folder: Path) -> list[tuple[str, str, str, int, tuple[str, str, str | None]]]:
    """A DCC and two SMART Health Cards of the public interop material, their trust files
    written to ``folder``: (text, option, trust file, time, expected reason, format, colour)."""
    interop = ROOT / "tests" / "vectors" / "interop"
    raw = json.loads((interop / "dcc" / "DE" / "2DCode" / "raw" / "1.json").read_text())
    dcc = folder / "dcc-trust.json"
    dcc.write_text(json.dumps({"certificates": [raw["TESTCTX"]["CERTIFICATE"]]}))
    clock = int(datetime.fromisoformat(raw["TESTCTX"]["VALIDATIONCLOCK"]).timestamp())
    examples = interop / "shc" / "examples"
    shc = folder / "shc-trust.json"
    shc.write_text(json.dumps(shc_example_trust()))

    def card(example: str) -> str:
        return (examples / f"example-{example}-f-qr-code-numeric-value-0.txt").read_text().strip()

    return [
        (raw["PREFIX"], "--dcc-trust", str(dcc), clock, ("VALID", "dcc", "green")),
        (card("00"), "--shc-trust", str(shc), 1_700_000_000, ("VALID", "shc", "green")),
        (card("03"), "--shc-trust", str(shc), 1_700_000_000, ("REVOKED", "shc", None)),
    ]


@pytest.mark.timeout(HANG_GUARD_S)
def test_the_light_install_verifies_codes_without_a_server_library(tmp_path: Path) -> None:
    times: dict[str, float] = {}
    with timed(times, "build_wheel_s"):
        wheel = build_wheel(tmp_path)
    # Without the test's PYTHONPATH: pip would take a checkout's metadata for an installed
    # codeengine, and the SDK must run from the venv alone.
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    with timed(times, "venv_and_install_s"):
        python = fresh_venv(tmp_path / "venv")
        pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
        run_ok([*pip, *_terminal_requirements()], env=env)
        # In this order pip reports no missing requirement (docs/sdk.md).
        installed_last = run_ok([*pip, "--no-deps", str(wheel)], env=env)
        assert "which is not installed" not in installed_last.stderr
    elsewhere = tmp_path / "terminal"
    elsewhere.mkdir()

    # What the venv holds: the package, the extra and what they need; no server library.
    listing = (
        "import importlib.metadata as m, json;"
        "print(json.dumps(sorted(d.metadata['Name'] for d in m.distributions())))"
    )
    installed = json.loads(run_ok([str(python), "-c", listing], env=env, cwd=elsewhere).stdout)
    names = {_normal(name) for name in installed}
    assert {"codeengine", "cryptography", "gmssl-pyx", "zxing-cpp"} <= names, installed
    assert not names & {_normal(name) for name in SERVICE_DISTRIBUTIONS}, installed
    modules = sorted(SERVER_ONLY | COLUMNAR)
    probe = f"import importlib.util as u; print([m for m in {modules!r} if u.find_spec(m)])"
    assert run_ok([str(python), "-c", probe], env=env, cwd=elsewhere).stdout.strip() == "[]"

    document = load("tokens")
    trust = elsewhere / "trust.json"
    trust.write_text(json.dumps(document["trust_list"]))
    chosen: list[Case] = cases("tokens", lambda c: c["id"] in CHOSEN)
    assert len(chosen) == len(CHOSEN)
    with timed(times, "verify_s"):
        for case in chosen:
            now = int(case.get("now", document["now"]))
            status, verdict = _verify(python, env, elsewhere, trust, now, [case["token"]])
            assert (verdict["reason"], status) == (
                case["expect"],
                0 if case["expect"] == "VALID" else 1,
            ), case["id"]
            if case["expect"] == "VALID":
                assert verdict["colour"] == case["claims"]["colour"], case["id"]

    # The same code scanned from an image: the extra's QR reader, in the terminal's venv.
    [valid] = cases("tokens", lambda c: c["id"] == "valid-es256-health-yellow")
    image = elsewhere / "code.png"
    image.write_bytes(render(valid["token"], QRFormat.PNG))
    now = int(valid.get("now", document["now"]))
    status, verdict = _verify(python, env, elsewhere, trust, now, ["--image", str(image)])
    assert (status, verdict["reason"], verdict["colour"]) == (0, "VALID", "yellow")

    # Other issuers' credentials, coloured by the policy the wheel ships (docs/formats.md).
    for text, trust_option, trust_file, at, expected in _credentials(elsewhere):
        argv = [trust_option, trust_file, text]
        status, verdict = _verify(python, env, elsewhere, trust, at, argv)
        assert (verdict["reason"], verdict["format"], verdict["colour"]) == expected
        assert status == (0 if expected[0] == "VALID" else 1)
    print(f"\nterminal install: {json.dumps(times)}; installed: {sorted(installed)}")
