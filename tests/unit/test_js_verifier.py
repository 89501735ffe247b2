"""The JavaScript verifier (sdk/js) under Node's own test runner: every known-answer vector.

``make test`` installs Node (``make system-packages``, Debian's ``nodejs``); a machine without
it fails here rather than skipping, because a verifier nobody runs drifts from the format.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.vectors_loader import cases

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sdk" / "js"
MIN_NODE_MAJOR = 20
"""Ed25519 in WebCrypto and the global ``crypto`` need Node 20."""
NODE_TIMEOUT_S = 90

_PASSED = re.compile(r"^\s*ok \d+ - (.+?)\s*$", re.MULTILINE)
_FAILED = re.compile(r"^\s*not ok \d+ - (.+?)\s*$", re.MULTILINE)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run `make system-packages` (Debian's nodejs)")
    return node


@cache
def _run() -> subprocess.CompletedProcess[str]:
    """One run of the package's tests for every test here: it takes about a second."""
    return subprocess.run(
        [_node(), "--test", "--test-reporter=tap", "test/"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        check=False,
    )


def test_node_is_recent_enough() -> None:
    version = subprocess.run(
        [_node(), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    major = int(version.lstrip("v").split(".")[0])
    assert major >= MIN_NODE_MAJOR, f"node {version.strip()} lacks Ed25519 in WebCrypto"


def test_every_js_test_passes() -> None:
    run = _run()
    failed = _FAILED.findall(run.stdout)
    assert run.returncode == 0 and not failed, f"failed: {failed}\n{run.stdout[-4000:]}"
    assert re.search(r"^# fail 0$", run.stdout, re.MULTILINE), run.stdout[-2000:]


@pytest.mark.parametrize("vector_set", ["tokens", "signed_lists"])
def test_every_vector_ran_and_passed(vector_set: str) -> None:
    passed = set(_PASSED.findall(_run().stdout))
    missing = [case["id"] for case in cases(vector_set) if case["id"] not in passed]
    assert not missing, f"{vector_set}.json cases the JS verifier did not pass: {missing}"
