"""``codeengine keys anchor`` and ``keys rotate-anchor``: the public anchors, a staged rotation."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from codeengine.code.keyring import Keyring
from codeengine.code.signedlist import ANCHOR_LIFETIME_S
from codeengine.code.suites import ED25519
from codeengine.code.trustlist import TrustList
from codeengine.keyfiles import anchor_public_path, load_trust_anchor, write_trust_anchor
from codeengine.ops.cli import main


@pytest.fixture
def anchor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An anchor file the settings name, made an hour ago."""
    path = tmp_path / "trust-anchor.json"
    made = int(time.time()) - 3600
    write_trust_anchor(
        path, Keyring.generate_at(made, ED25519, os.urandom, lifetime_s=ANCHOR_LIFETIME_S)
    )
    monkeypatch.setenv("CODEENGINE_KEYS_TRUST_ANCHOR_FILE", str(path))
    return path


def test_keys_anchor_prints_the_public_anchors(
    anchor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "anchor"]) == 0
    printed = capsys.readouterr().out
    assert TrustList.from_json(printed) == TrustList.from_keyring(load_trust_anchor(anchor))
    assert '"d"' not in printed, "never the private key"


def test_a_staged_rotation_publishes_the_next_anchor_before_it_signs(
    anchor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = load_trust_anchor(anchor)
    now = int(time.time())
    assert main(["keys", "rotate-anchor", "--activate-in-s", "86400"]) == 0
    answer = json.loads(capsys.readouterr().out)
    rotated = load_trust_anchor(anchor)
    assert rotated.next is not None and rotated.current.kid == before.current.kid
    assert answer["signs_from"] == rotated.next.not_before >= now + 86400
    assert rotated.signing_key_at(now).kid == before.current.kid, "the old anchor signs until then"
    assert rotated.signing_key_at(now + 86400 + 60).kid == rotated.next.kid
    # Terminals get both anchors at once: the public file holds the old and the new.
    public = TrustList.from_json(anchor_public_path(anchor).read_text())
    assert {key.kid for key in public} == {before.current.kid, rotated.next.kid}
    assert stat.S_IMODE(anchor.stat().st_mode) == 0o600
    # A second staged rotation while one is pending is refused.
    assert main(["keys", "rotate-anchor", "--activate-in-s", "86400"]) == 2


def test_a_rotation_after_a_compromise_switches_at_once_without_overlap(
    anchor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = load_trust_anchor(anchor)
    now = int(time.time())
    assert main(["keys", "rotate-anchor", "--activate-in-s", "0", "--overlap-s", "0"]) == 0
    rotated = load_trust_anchor(anchor)
    assert rotated.current.kid != before.current.kid
    (old,) = rotated.retired
    assert old.kid == before.current.kid and old.not_after <= now + 5
