"""The wheel, built from this checkout and installed into a fresh virtualenv outside it, serves
against the session's TLS + ACL cluster.

``codeengine serve --check`` passes; an issuer and a verifier started with the installed
``codeengine serve`` from a folder outside the checkout (so nothing can be found relative to
it) generate a code and verify it. The wheel is built as tests/e2e/wheel.py says, so a file
the build needs but the recipe forgets fails here. Each step's time goes to the test's output.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from codeengine import __version__
from codeengine.code.identifiers import make_resident_id
from codeengine.ops.devcluster import DevCluster
from codeengine.ops.harness import Child, group, spawn, wait_ready
from tests.e2e.helpers import dev_keys, free_port
from tests.e2e.wheel import HANG_GUARD_S, build_wheel, fresh_venv, run_ok, timed

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

READY_GUARD_S = 60.0
SHUTDOWN_TIMEOUT_S = 5
# The test itself may run from another checkout's editable install: a child of the installed
# package must find it alone.
SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PROMETHEUS_MULTIPROC_DIR")


def _install(tmp_path: Path, wheel: Path) -> Path:
    """A fresh virtualenv with the wheel and its dependencies."""
    python = fresh_venv(tmp_path / "venv")
    run_ok([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(wheel)])
    return python.parent.parent


def _settings(cluster: DevCluster, key_files: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEENGINE_")}
    for name in SCRUBBED:
        env.pop(name, None)
    env |= {f"CODEENGINE_{k.upper()}": v for k, v in key_files.items()}
    env |= cluster.client_env()
    env |= {f"CODEENGINE_{k.upper()}": v for k, v in extra.items()}
    return env


def _call(url: str, key: str, body: object = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


# Building and installing took 31 s of 51 s with pip's cache warm (2 busy cores); a cold cache
# downloads the dependencies too. The suite's per-test timeout (120 s) is for tests that wait on
# nothing but themselves.
@pytest.mark.timeout(HANG_GUARD_S)
def test_the_installed_wheel_serves_a_code_from_generate_to_verify(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    times: dict[str, float] = {}
    with timed(times, "build_wheel_s"):
        wheel = build_wheel(tmp_path)
    with timed(times, "venv_and_install_s"):
        venv = _install(tmp_path, wheel)
    bin_dir = venv / "bin"
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    env = _settings(cluster, key_files)

    # The installed package is the venv's own, with its configs inside, and no test library.
    probe = (
        "import codeengine, importlib.metadata as m, importlib.util as u;"
        "from codeengine.code.shipped import shipped;"
        "from codeengine.code.cities import load_cities;"
        "print(codeengine.__file__); print(shipped('rules.toml')); print(len(load_cities()));"
        "print(m.version('codeengine')); print(u.find_spec('redis') is None)"
    )
    lines = run_ok([str(bin_dir / "python"), "-c", probe], env=env, cwd=elsewhere).stdout.split()
    site = str(venv / "lib")
    assert lines[0].startswith(site) and lines[1].startswith(site), lines
    assert lines[1].endswith("codeengine/defaults/rules.toml")
    assert lines[2:] == ["13", __version__, "True"]
    version = run_ok([str(bin_dir / "codeengine"), "--version"], env=env, cwd=elsewhere)
    assert version.stdout.strip() == f"codeengine {__version__}"

    with timed(times, "check_s"):
        checked = run_ok([str(bin_dir / "codeengine"), "serve", "--check"], env=env, cwd=elsewhere)
    assert checked.stdout.endswith("settings, secret files and cluster ok\n")

    ports = {name: free_port() for name in ("issuer", "verifier", "issuer_m", "verifier_m")}
    env = _settings(
        cluster,
        key_files,
        service_issuer_port=str(ports["issuer"]),
        service_verifier_port=str(ports["verifier"]),
        service_issuer_management_port=str(ports["issuer_m"]),
        service_verifier_management_port=str(ports["verifier_m"]),
        service_workers="1",
        service_shutdown_timeout_s=str(SHUTDOWN_TIMEOUT_S),
    )
    issuer = f"http://127.0.0.1:{ports['issuer']}"
    verifier = f"http://127.0.0.1:{ports['verifier']}"
    keys = dev_keys(key_files)
    with group(SHUTDOWN_TIMEOUT_S + 10) as started:
        serves: list[Child] = []
        with timed(times, "serve_ready_s"):
            for service, url in (("issuer", issuer), ("verifier", verifier)):
                argv = [str(bin_dir / "codeengine"), "serve", service]
                log = tmp_path / f"{service}.log"
                serves.append(started.add(spawn(service, argv, env, log, cwd=elsewhere)))
                # The verifier needs the trust list the issuer publishes: one after the other.
                wait_ready(serves, [f"{url}/readyz"], READY_GUARD_S)

        # A person no other test has made: a new subject shows the rules' no-data colour.
        born = date(1960, 1, 1) + timedelta(days=secrets.randbelow(20_000))
        person = {"kind": "person", "id": make_resident_id("320104", born, 7), "city": 320100}
        status, made = _call(f"{issuer}/v1/subjects", keys["generate"], person)
        assert (status, made["created"], made["colour"]) == (201, True, "green"), made
        status, shown = _call(f"{issuer}/v1/subjects/{made['subject']}/code", keys["display"])
        assert status == 200, shown
        scan = {"code": shown["token"], "terminal": "gate-1", "city": 320100}
        status, verdict = _call(f"{verifier}/v1/verify", keys["verify"], scan)
        assert status == 200, verdict
        assert (verdict["valid"], verdict["reason"]) == (True, "VALID")
        assert verdict["colour"] == "green"
        # The terminal page's offline parts come from the wheel too.
        for path in ("/static/sdk/index.js", "/static/terminal-offline.js"):
            with urllib.request.urlopen(f"{verifier}{path}", timeout=5) as answer:
                assert answer.headers["Content-Type"].startswith("text/javascript"), path
        with urllib.request.urlopen(f"{verifier}/pages/terminal-worker.js", timeout=5) as answer:
            assert b"/static/sdk/verify.js" in answer.read()

        for serve in serves:
            serve.proc.send_signal(signal.SIGTERM)
        assert [s.proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 10) for s in serves] == [0, 0]
    print(f"\ninstall test times: {json.dumps(times)}")
