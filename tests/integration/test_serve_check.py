"""``codeengine serve --check`` against the session's TLS + ACL cluster: exit 0 for a good
setup, exit 1 with one line naming the setting for a missing key file, a key file open to
others, an unreachable cluster, a wrong password, a KEK that does not open the stored keyring.

Each test works on copies of the session's key files and password, so that changing them
touches no other test."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codeengine.keyfiles import load_pepper, write_private
from codeengine.ops.cli import main
from codeengine.ops.devcluster import DevCluster
from codeengine.ops.preflight import env_name
from codeengine.settings import Settings
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import KeyState, refresh_keys, store_settings
from tests.e2e.helpers import free_port

pytestmark = pytest.mark.cluster

HANG_GUARD_S = 60.0


@pytest.fixture
def env(
    cluster: DevCluster,
    key_files: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """``CODEENGINE_*`` of copies of the session's key files and cluster password, set in this
    process's environment, and a working directory with no configs/ folder in it."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    settings: dict[str, str] = {}
    for name, path in key_files.items():
        copy = keys / Path(path).name
        shutil.copy2(path, copy)
        settings[f"CODEENGINE_{name.upper()}"] = str(copy)
    settings |= cluster.client_env()
    password = keys / "codeengine.password"
    shutil.copy2(settings["CODEENGINE_CLUSTER_PASSWORD_FILE"], password)
    settings["CODEENGINE_CLUSTER_PASSWORD_FILE"] = str(password)
    for name in list(os.environ):
        if name.startswith("CODEENGINE_") or name == "PROMETHEUS_MULTIPROC_DIR":
            monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return settings


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """``codeengine serve ARGV --check``: the exit code, standard output and error lines."""
    code = main(["serve", *argv, "--check", "--deadline", "5"])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def test_a_good_setup_passes_for_both_services(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check(capsys)
    assert (code, err) == (0, [])
    assert out == "codeengine serve: issuer, verifier: settings, secret files and cluster ok\n"


def test_a_missing_key_file_is_one_line_naming_the_setting(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    pepper = Path(env["CODEENGINE_KEYS_PEPPER_FILE"])
    pepper.unlink()
    code, _, err = check(capsys, "issuer")
    assert (code, err) == (1, [f"codeengine serve: keys.pepper_file: {pepper} does not exist"])
    # A verifier never reads the pepper: the same setup is good for it.
    assert check(capsys, "verifier")[0] == 0


def test_a_key_file_readable_by_others_is_refused(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    alias_key = Path(env["CODEENGINE_KEYS_ALIAS_KEY_FILE"])
    alias_key.chmod(0o644)
    code, _, err = check(capsys, "verifier")
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"codeengine serve: keys.alias_key_file: {alias_key} is open to")
    assert "mode 0644" in err[0]


def test_an_unreachable_cluster_is_told_from_a_refused_login(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("CODEENGINE_CLUSTER_NODES", nowhere)
    code, _, err = check(capsys, "verifier")
    assert code == 1 and len(err) == 1
    assert err[0].startswith(
        f"codeengine serve: cluster.nodes: unreachable: no answer from {nowhere}"
    )


def test_a_wrong_password_is_one_line_naming_the_password_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A real process: its standard error holds that line and nothing else (no log lines)."""
    password = Path(env["CODEENGINE_CLUSTER_PASSWORD_FILE"])
    write_private(password, b"not-the-password-4711")
    done = subprocess.run(
        [sys.executable, "-m", "codeengine", "serve", "issuer", "--check"],
        env=dict(os.environ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("codeengine serve: cluster.password_file: store ")
    assert "refused the login of 'codeengine'" in lines[0]
    assert "4711" not in done.stderr + done.stdout


def test_a_kek_that_does_not_open_the_stored_keyring_stops_an_issuer(
    env: dict[str, str], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_holds_a_keyring(settings)
    # The first keyring file is not needed once the store holds one.
    Path(env["CODEENGINE_KEYS_KEYRING_FILE"]).unlink()
    assert check(capsys, "issuer")[0] == 0
    write_private(Path(env["CODEENGINE_KEYS_KEK_FILE"]), os.urandom(32).hex().encode())
    code, _, err = check(capsys, "issuer")
    assert code == 1 and len(err) == 1
    assert err[0].startswith("codeengine serve: keys.kek_file: does not open the keyring")
    assert check(capsys, "verifier")[0] == 0


def test_a_setting_that_does_not_parse_is_one_line_and_exit_1(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env_name("service.workers"), "many")
    code, _, err = check(capsys)
    assert (code, err) == (
        1,
        ["codeengine serve: settings: CODEENGINE_SERVICE_WORKERS: expected int"],
    )


def _store_holds_a_keyring(settings: Settings) -> None:
    """Seed the session store with the session keyring, as an issuer's first start does."""

    async def seed() -> None:
        store = RedisStore(store_settings(settings))
        try:
            state = KeyState(kek=load_pepper(Path(settings.keys.kek_file)))
            await refresh_keys(state, store, settings, signs=True)
        finally:
            await store.close()

    asyncio.run(seed())


def test_the_records_service_checks_its_own_login_and_its_store_folder(
    env: dict[str, str],
    cluster: DevCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in cluster.client_env("records").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CODEENGINE_RECORDS_PATH", str(tmp_path / "records" / "data"))
    code, out, err = check(capsys, "records")
    assert (code, err) == (0, [])
    assert out == "codeengine serve: records: settings, secret files and cluster ok\n"
    # A folder it cannot write: one line naming the setting.
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    monkeypatch.setenv("CODEENGINE_RECORDS_PATH", str(blocked / "data"))
    code, _, err = check(capsys, "records")
    assert code == 1
    assert err == [f"codeengine serve: records.path: {blocked} is not a folder this user can write"]
