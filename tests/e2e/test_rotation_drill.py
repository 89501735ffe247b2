"""The suite-rotation drill in short form: a real cluster, issuer and verifier, real terminals.

Codes live 10 s and terminals fetch the signed lists every 3 s (the services' published
``codes.trust_list_max_age_s``), so a staged rotation Ed25519 -> SM2 -> Ed25519 takes seconds.
The drill waits for events (a code of the new key, every terminal having fetched since the
switch, the last code of a replaced key expiring), so a slow machine makes it longer, not
different. The emergency rotation is the control: the same drill must see the terminals that
could not know the new key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codeengine.ops.rotationdrill import RotationDrillOptions, run_rotation_drill

pytestmark = pytest.mark.cluster

SHORT = {
    "rate": 60.0,
    "subjects": 40,
    "terminals": 3,
    "display_ttl_s": 10,
    "trust_list_max_age_s": 3,
    "signed_list_ttl_s": 60,
}


def drill(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    options = RotationDrillOptions(**{**SHORT, **overrides}, out_dir=tmp_path)
    summary, report = run_rotation_drill(options)
    assert json.loads(report.read_text()) == summary
    assert report.with_suffix(".md").read_text().startswith("# Drill `rotate-suite`")
    assert summary["displayed_by_suite"].get("SM2SM3", 0) > 0, "SM2 codes were handed out"
    assert summary["verified_offline"] > 0 and summary["verified_online"] > 0
    return summary


def test_a_staged_rotation_to_sm2_and_back_refuses_no_valid_code(tmp_path: Path) -> None:
    s = drill(tmp_path, to="SM2SM3", back=True)
    assert s["refused_valid_offline"] == 0, s["refused_valid_examples"]
    assert s["refused_valid_online"] == 0, s["refused_valid_examples"]
    assert [r["to"] for r in s["rotations"]] == ["SM2SM3", "EdDSA"]
    for rotation in s["rotations"]:
        # Every terminal on its schedule held the new key when it began to sign, including
        # the one that fetched the moment the rotation was acknowledged.
        assert rotation["terminals_at_switch"] >= SHORT["terminals"] + 1, rotation
        assert rotation["terminals_without_key_at_switch"] == 0, rotation
        assert rotation["first_list_with_key_s"] < rotation["activates_at_s"], rotation
        assert rotation["first_code_s"] >= rotation["activates_at_s"], "no code before its key"
    # Each suite's codes verified, online and offline, and the replaced keys' codes were still
    # accepted after the switch, until they expired.
    for table in ("online_by_suite_and_reason", "offline_by_suite_and_reason"):
        assert {"EdDSA VALID", "SM2SM3 VALID"} <= set(s[table]), s[table]
    assert sum(s["old_codes_valid_after_switch"].values()) > 0
    assert not s["list_fetch_failures"]
    assert s["passed"], s["goals"]


def test_the_drill_sees_the_terminals_an_emergency_rotation_leaves_behind(
    tmp_path: Path,
) -> None:
    s = drill(tmp_path, to="SM2SM3", activate_in_s=0)
    (rotation,) = s["rotations"]
    # The key signs at once: every terminal still holds a list from before the rotation.
    assert rotation["terminals_without_key_at_switch"] == rotation["terminals_at_switch"] > 0
    assert all(r["reason"] == "UNKNOWN_KID" for r in s["refused_valid_examples"])
    assert s["refused_valid_online"] == 0, "the store holds what the issuer handed out"
    failed = {g["goal"] for g in s["goals"] if not g["passed"]}
    assert "terminals without the new key when it started signing" in failed
    assert not s["passed"]
