"""The terminal SDK is light: importing it and running its command line loads no server library.

Each case runs ``python -m verifier.offline`` on a known-answer vector in a fresh interpreter and
reads ``sys.modules`` afterwards, so what a suite's verify imports lazily counts as much as what
the package imports at the top. tools/layers.py checks the same statically; this is the runtime
proof (a library can pull another one in, which no static check of the project's own imports
sees). tests/e2e/test_terminal_install.py installs the SDK where the server libraries are
absent altogether.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.vectors_loader import Case, case_id, cases, load
from tools.layers import COLUMNAR, SERVER_ONLY

ROOT = Path(__file__).resolve().parents[2]
PROBE_TIMEOUT_S = 60
"""Against a hang only: an interpreter start and one verify."""

# Run as the command line is run, then report what it printed and every module it loaded.
PROBE = """
import contextlib, io, json, runpy, sys
sys.argv = ["verifier.offline", *sys.argv[1:]]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        runpy.run_module("verifier.offline", run_name="__main__", alter_sys=True)
    except SystemExit as exited:
        status = exited.code
print(json.dumps({"status": status, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""

# One case per suite and per kind of answer: each suite's verify imports its own libraries.
CHOSEN = (
    "valid-ed25519-health-green",
    "valid-es256-health-yellow",
    "valid-sm2-health-green",
    "bad-signature-es256-flipped-bit",
    "bad-signature-sm2-flipped-bit",
    "expired",
    "malformed-base45-lowercase",
)


def _run_cli(tmp_path: Path, case: Case) -> dict[str, Any]:
    document = load("tokens")
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(document["trust_list"]))
    now = int(case.get("now", document["now"]))
    argv = ["--trust", str(trust), "--fetched-at", str(now), "--at", str(now), case["token"]]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("case", cases("tokens", lambda c: c["id"] in CHOSEN), ids=case_id)
def test_the_command_line_verifies_a_vector_without_loading_a_server_library(
    tmp_path: Path, case: Case
) -> None:
    result = _run_cli(tmp_path, case)
    verdict = json.loads(result["out"])
    assert verdict["reason"] == case["expect"]
    assert result["status"] == (0 if case["expect"] == "VALID" else 1)
    loaded = {name.partition(".")[0] for name in result["modules"]}
    assert loaded & (SERVER_ONLY | COLUMNAR) == set()
    # The probe did run the SDK from this checkout, with the pure layer under it.
    assert {"verifier", "codeengine", "cryptography"} <= loaded
    assert "verifier.app" not in result["modules"]


def test_every_chosen_case_exists() -> None:
    assert {c["id"] for c in cases("tokens", lambda c: c["id"] in CHOSEN)} == set(CHOSEN)
