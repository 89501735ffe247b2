"""Dev key material: created once, owner-only, and topped up when a scope is added."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from codeengine.code.trustlist import TrustList
from codeengine.keyfiles import anchor_public_path, load_trust_anchor
from codeengine.ops.devsecrets import DEV_SCOPES, ensure_dev_material
from codeengine.settings import Settings, load_settings


def _settings(tmp_path: Path) -> Settings:
    env = {
        "CODEENGINE_KEYS_KEYRING_FILE": str(tmp_path / "keyring.json"),
        "CODEENGINE_KEYS_KEK_FILE": str(tmp_path / "kek"),
        "CODEENGINE_KEYS_PEPPER_FILE": str(tmp_path / "pepper"),
        "CODEENGINE_KEYS_CREDENTIALS_FILE": str(tmp_path / "credentials.json"),
        "CODEENGINE_KEYS_ALIAS_KEY_FILE": str(tmp_path / "alias-key"),
        "CODEENGINE_KEYS_RECORD_MAC_FILE": str(tmp_path / "record-mac.json"),
        "CODEENGINE_KEYS_AUDIT_MAC_FILE": str(tmp_path / "audit-mac.json"),
        "CODEENGINE_KEYS_CHECKPOINT_KEY_FILE": str(tmp_path / "checkpoint.pem"),
        "CODEENGINE_KEYS_TRUST_ANCHOR_FILE": str(tmp_path / "trust-anchor.json"),
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


def test_every_key_is_its_own_owner_only_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ensure_dev_material(settings)
    keys = settings.keys
    files = [keys.pepper_file, keys.kek_file, keys.alias_key_file, keys.record_mac_file,
             keys.audit_mac_file, keys.checkpoint_key_file, keys.trust_anchor_file]  # fmt: skip
    assert all(stat.S_IMODE(Path(f).stat().st_mode) == 0o600 for f in files)
    # Split keys: no two roles share a secret (a verifier's keys open nothing of the pepper's).
    contents = [Path(f).read_bytes() for f in files]
    assert len(set(contents)) == len(contents)
    record = json.loads(Path(keys.record_mac_file).read_text())
    audit = json.loads(Path(keys.audit_mac_file).read_text())
    assert record["current"] in record["keys"] and set(record["keys"]).isdisjoint(audit["keys"])


def test_the_trust_anchor_has_its_public_half_beside_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ensure_dev_material(settings)
    anchor = Path(settings.keys.trust_anchor_file)
    anchors = load_trust_anchor(anchor)
    public = anchor_public_path(anchor)
    assert public.name == "trust-anchor.pub.json"
    jwks = json.loads(public.read_text())
    assert all("d" not in jwk for jwk in jwks["keys"]), "the public half holds no private key"
    assert TrustList.from_jwks(jwks) == TrustList.from_keyring(anchors)
    # A lost public half is written again from the private one; the anchor itself stays.
    public.unlink()
    ensure_dev_material(settings)
    assert TrustList.from_json(public.read_text()) == TrustList.from_keyring(anchors)
    assert load_trust_anchor(anchor) == anchors
