"""Dev key material: created once, owner-only, and topped up when a scope is added."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from codeengine.ops.devsecrets import DEV_SCOPES, ensure_dev_material
from codeengine.settings import Settings, load_settings


def _settings(tmp_path: Path) -> Settings:
    env = {
        "CODEENGINE_KEYS_KEYRING_FILE": str(tmp_path / "keyring.json"),
        "CODEENGINE_KEYS_KEK_FILE": str(tmp_path / "kek"),
        "CODEENGINE_KEYS_PEPPER_FILE": str(tmp_path / "pepper"),
        "CODEENGINE_KEYS_CREDENTIALS_FILE": str(tmp_path / "credentials.json"),
    }
    return load_settings(env=env)


def test_credentials_get_one_client_per_scope_and_keep_existing_keys(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = ensure_dev_material(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = json.loads(path.read_text())
    assert sorted(s for c in first["clients"] for s in c["scopes"]) == sorted(DEV_SCOPES)
    # A file written before the 'fusion' scope existed gains it; other keys do not change.
    older = {**first, "clients": [c for c in first["clients"] if c["scopes"] != ["fusion"]]}
    path.write_text(json.dumps(older))
    ensure_dev_material(settings)
    topped = json.loads(path.read_text())
    assert topped["clients"][: len(older["clients"])] == older["clients"]
    assert [c["scopes"] for c in topped["clients"][len(older["clients"]) :]] == [["fusion"]]
    ensure_dev_material(settings)
    assert json.loads(path.read_text()) == topped, "nothing missing: nothing rewritten"
