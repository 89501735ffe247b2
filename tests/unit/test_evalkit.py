"""The compose stack's init job: each consumer's folder, owner-only, kept across runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codeengine.ops.evalkit import main

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "engine.toml"


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_each_folder_is_its_readers_alone_and_a_second_run_keeps_the_material(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CODEENGINE_CONFIG", str(CONFIG))
    out = tmp_path / "out"
    uid = str(os.getuid())
    argv = ["--out", str(out), "--uid", uid, "--redis-uid", uid]
    assert main(argv) == 0
    assert "secrets ready" in capsys.readouterr().out
    for consumer in ("issuer", "verifier", "records", "redis"):
        folder = out / consumer
        for path in (folder, *folder.rglob("*")):
            info = path.stat()
            assert info.st_uid == os.getuid()
            wanted = 0o700 if path.is_dir() else 0o400
            assert stat.S_IMODE(info.st_mode) == wanted, path
    first = {c: _files(out / c) for c in ("issuer", "verifier", "records", "redis", "ops")}
    # A second `docker compose up` runs the job again: the cluster's CA, passwords and the
    # keys must stay, or the nodes and the store would no longer match them.
    assert main(argv) == 0
    assert {c: _files(out / c) for c in first} == first


def test_a_secret_outside_the_mounted_folder_is_refused_naming_its_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CODEENGINE_CONFIG", str(CONFIG))
    monkeypatch.setenv("CODEENGINE_KEYS_PEPPER_FILE", "/etc/codeengine/pepper")
    assert main(["--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "keys.pepper_file" in error and "/run/secrets/codeengine" in error


def test_the_records_folder_holds_its_own_login_and_no_code_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records service logs in as its own ACL user, with that user's password: never the
    services' login, nor a key that reads or signs a code."""
    monkeypatch.setenv("CODEENGINE_CONFIG", str(CONFIG))
    out = tmp_path / "out"
    assert main(["--out", str(out)]) == 0
    held = _files(out / "records")
    assert sorted(held) == [
        "keys/credentials.json",
        "redis/ca.crt",
        "redis/client.crt",
        "redis/client.key",
        "redis/records.password",
    ]
    ops = out / "ops" / "redis"
    assert held["redis/records.password"] == ops.joinpath("records.password").read_bytes()
    assert held["redis/records.password"] != ops.joinpath("codeengine.password").read_bytes()
    assert held["keys/credentials.json"] == _files(out / "verifier")["keys/credentials.json"]
