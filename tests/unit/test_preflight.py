"""``codeengine serve``'s checks of files, and the pieces of the serve command that need no
cluster: which secrets each service reads, the metrics folder, the worker count.

The cluster half of the checks is in tests/integration/test_serve_check.py."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from codeengine.ops.cli import _parser
from codeengine.ops.devsecrets import ensure_dev_material
from codeengine.ops.preflight import (
    SECRET_FILES,
    Problem,
    check_files,
    env_name,
    secret_settings,
    service_files,
)
from codeengine.ops.serve import (
    MetricsFolder,
    MetricsFolderBusy,
    RestartBudget,
    available_cpus,
    label,
    metrics_folder_named,
    port_problem,
)
from codeengine.settings import Settings, load_settings

NO_CLUSTER_FILES = {
    "CODEENGINE_CLUSTER_USERNAME": "",
    "CODEENGINE_CLUSTER_PASSWORD_FILE": "",
    "CODEENGINE_CLUSTER_CERT_FILE": "",
    "CODEENGINE_CLUSTER_KEY_FILE": "",
}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Settings naming a fresh, owner-only set of key files under ``tmp_path``."""
    keys = tmp_path / "keys"
    names = {
        "keyring_file": "keyring.json",
        "kek_file": "kek",
        "pepper_file": "pepper",
        "alias_key_file": "alias-key",
        "record_mac_file": "record-mac.json",
        "audit_mac_file": "audit-mac.json",
        "checkpoint_key_file": "checkpoint.pem",
        "trust_anchor_file": "trust-anchor.json",
        "credentials_file": "credentials.json",
    }
    found = {f"CODEENGINE_KEYS_{k.upper()}": str(keys / v) for k, v in names.items()}
    found |= NO_CLUSTER_FILES
    ensure_dev_material(load_settings(env=found))
    return found


def _settings(env: dict[str, str], **changes: str) -> Settings:
    return load_settings(env=env | {env_name(k): v for k, v in changes.items()})


def test_verifiers_read_neither_the_pepper_nor_the_kek_nor_the_audit_keys() -> None:
    verifier, issuer = secret_settings("verifier"), secret_settings("issuer")
    never_on_verifiers = (
        "keys.pepper_file",
        "keys.kek_file",
        "keys.keyring_file",
        "keys.audit_mac_file",
        "keys.trust_anchor_file",
    )
    for never in never_on_verifiers:
        assert never in issuer and never not in verifier
    for both in ("keys.alias_key_file", "keys.record_mac_file", "cluster.password_file"):
        assert both in issuer and both in verifier
    assert all("checkpoint" not in s for s in issuer + verifier)
    with pytest.raises(ValueError, match="service"):
        secret_settings("ops")


def test_every_secret_setting_exists_and_has_its_environment_name() -> None:
    settings = Settings()
    for secret in SECRET_FILES:
        section, key = secret.setting.split(".")
        assert isinstance(getattr(getattr(settings, section), key), str), secret.setting
    assert env_name("keys.pepper_file") == "CODEENGINE_KEYS_PEPPER_FILE"
    assert env_name("cluster.password_file") == "CODEENGINE_CLUSTER_PASSWORD_FILE"


def test_owner_only_key_files_pass(env: dict[str, str]) -> None:
    assert check_files(_settings(env), ["issuer", "verifier"]) == []


def test_a_missing_pepper_stops_an_issuer_but_not_a_verifier(
    env: dict[str, str], tmp_path: Path
) -> None:
    settings = _settings(env, **{"keys.pepper_file": str(tmp_path / "nowhere")})
    assert check_files(settings, ["verifier"]) == []
    [problem] = check_files(settings, ["issuer"])
    assert problem.setting == "keys.pepper_file"
    assert problem.reason == f"{tmp_path / 'nowhere'} does not exist"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_a_key_file_open_to_group_or_others_is_named_with_its_mode(
    env: dict[str, str], mode: int
) -> None:
    kek = Path(env["CODEENGINE_KEYS_KEK_FILE"])
    kek.chmod(mode)
    [problem] = check_files(_settings(env), ["issuer"])
    assert problem.setting == "keys.kek_file"
    assert f"mode {mode:04o}" in problem.reason and "group or others" in problem.reason


def test_a_folder_or_an_unset_setting_is_no_key_file(env: dict[str, str], tmp_path: Path) -> None:
    settings = _settings(env, **{"keys.alias_key_file": str(tmp_path), "keys.audit_mac_file": ""})
    assert check_files(settings, ["issuer"]) == [
        Problem("keys.alias_key_file", f"{tmp_path} is not a regular file"),
        Problem("keys.audit_mac_file", "not set"),
    ]


def test_a_malformed_secret_is_named_never_shown(env: dict[str, str]) -> None:
    pepper = Path(env["CODEENGINE_KEYS_PEPPER_FILE"])
    pepper.write_text("c0ffee")
    [problem] = check_files(_settings(env), ["issuer"])
    assert problem.setting == "keys.pepper_file"
    assert "fewer than 32 bytes" in problem.reason and "c0ffee" not in problem.reason
    credentials = Path(env["CODEENGINE_KEYS_CREDENTIALS_FILE"])
    credentials.write_text('{"clients": [{"client": "x", "key": "s3cr3t-k3y"}]}')
    problems = check_files(_settings(env), ["verifier"])
    assert [p.setting for p in problems] == ["keys.credentials_file"]
    assert "s3cr3t" not in str(problems[0])


def test_the_first_keyring_may_be_gone_once_the_store_holds_one(env: dict[str, str]) -> None:
    Path(env["CODEENGINE_KEYS_KEYRING_FILE"]).unlink()
    # Whether the store holds one is the cluster check's question.
    assert check_files(_settings(env), ["issuer"]) == []
    Path(env["CODEENGINE_KEYS_KEK_FILE"]).unlink()
    assert [p.setting for p in check_files(_settings(env), ["issuer"])] == ["keys.kek_file"]


def test_the_rules_and_city_files_are_checked_for_the_issuer_only(
    env: dict[str, str], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("version = 0\n")
    empty = tmp_path / "no-cities"
    empty.mkdir()
    settings = _settings(env, **{"codes.rules_file": str(rules), "codes.cities_dir": str(empty)})
    assert check_files(settings, ["verifier"]) == []
    problems = check_files(settings, ["issuer"])
    assert [p.setting for p in problems] == ["codes.rules_file", "codes.cities_dir"]
    assert "version" in problems[0].reason and "no city file" in problems[1].reason
    fusion = replace(settings.codes, fusion_file=str(tmp_path / "none.toml"))
    broken = replace(settings, codes=fusion)
    assert "codes.fusion_file" in [p.setting for p in check_files(broken, ["verifier"])]


def test_the_credential_policy_and_trust_files_are_checked_for_the_verifier(
    env: dict[str, str], tmp_path: Path
) -> None:
    good = _settings(env)
    assert check_files(good, ["verifier"]) == []
    dcc = tmp_path / "dcc-trust.json"
    dcc.write_text('{"certificates": ["not base64!"]}')
    broken = _settings(env, **{"verifier.dcc_trust_file": str(dcc)})
    assert check_files(broken, ["issuer"]) == []
    problems = check_files(broken, ["verifier"])
    assert len(problems) == 1 and "verifier.dcc_trust_file" in problems[0].setting
    assert "base64" in problems[0].reason
    missing = _settings(env, **{"verifier.shc_trust_file": str(tmp_path / "none.json")})
    (problem,) = check_files(missing, ["verifier"])
    assert "verifier.shc_trust_file" in problem.setting and "none.json" in problem.reason


def test_available_cpus_honours_a_container_quota(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    assert available_cpus(cpu_max) == cpus
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) == cpus
    cpu_max.write_text("50000 100000\n")
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text(f"{150000 * cpus} 100000\n")
    assert available_cpus(cpu_max) == cpus


def test_a_named_metrics_folder_is_emptied_held_and_left_as_found(tmp_path: Path) -> None:
    named = tmp_path / "metrics"
    named.mkdir()
    (named / "counter_123.db").write_bytes(b"stale")
    (named / "README").write_text("not ours")
    folder = MetricsFolder.open(str(named), "issuer")
    assert not folder.owned and sorted(p.name for p in named.iterdir()) == ["README"]
    with pytest.raises(MetricsFolderBusy, match="in use"):
        MetricsFolder.open(str(named), "issuer")
    (named / "gauge_livesum_77.db").write_bytes(b"x")
    folder.close()
    assert sorted(p.name for p in named.iterdir()) == ["README"]
    MetricsFolder.open(str(named), "issuer").close()


def test_a_made_or_temporary_metrics_folder_is_removed(tmp_path: Path) -> None:
    made = MetricsFolder.open(str(tmp_path / "new" / "metrics"), "verifier")
    assert made.owned and made.path.is_dir()
    made.close()
    assert not made.path.exists() and (tmp_path / "new").is_dir()
    temporary = MetricsFolder.open("", "verifier")
    assert temporary.owned and temporary.path.stat().st_mode & 0o077 == 0
    temporary.close()
    assert not temporary.path.exists()


def test_restarts_past_the_budget_within_the_window_are_refused() -> None:
    budget = RestartBudget(limit=2, window_s=60.0)
    assert [budget.allow_at(t) for t in (0.0, 10.0, 59.0)] == [True, True, False]
    # The window slides: the restart at 0 s no longer counts at 61 s, the one at 10 s still does.
    assert budget.allow_at(61.0) is False
    assert budget.allow_at(200.0) is True


def test_a_port_another_program_holds_is_named() -> None:
    with socket.socket() as holder, socket.socket() as free:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        free.bind(("127.0.0.1", 0))
        taken, unused = holder.getsockname()[1], free.getsockname()[1]
        free.close()
        env = {
            "CODEENGINE_SERVICE_ISSUER_PORT": str(taken),
            "CODEENGINE_SERVICE_VERIFIER_PORT": str(unused),
        }
        settings = load_settings(env=env)
        assert port_problem("issuer", settings) == Problem(
            "service.issuer_port", f"cannot listen on 127.0.0.1:{taken}: Address already in use"
        )
        assert port_problem("verifier", settings) is None


def test_a_city_endpoint_is_named_by_city_and_role() -> None:
    city = load_settings(
        env={"CODEENGINE_SERVICE_CITY": "320100", "CODEENGINE_SERVICE_ROLE": "backup"}
    )
    assert (label("issuer", city), label("verifier", Settings())) == (
        "issuer-320100-backup",
        "verifier",
    )


def test_what_a_deployment_mounts_for_each_service() -> None:
    assert service_files("verifier") == (
        "cluster.password_file",
        "cluster.key_file",
        "keys.alias_key_file",
        "keys.record_mac_file",
        "keys.credentials_file",
        "cluster.ca_file",
        "cluster.cert_file",
    )
    assert set(service_files("issuer")) - set(service_files("verifier")) == {
        "keys.kek_file",
        "keys.pepper_file",
        "keys.audit_mac_file",
        "keys.keyring_file",
        "keys.trust_anchor_file",
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "issuer", "--config", "own.toml"],
        ["--config", "own.toml", "serve", "issuer"],
    ],
    ids=["after", "before"],
)
def test_serve_takes_its_settings_file_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert _parser().parse_args(argv).config == "own.toml"
    assert _parser().parse_args(["serve", "verifier"]).config is None


def test_the_metrics_folder_is_the_setting_else_the_environment_else_temporary() -> None:
    named = load_settings(env={"CODEENGINE_SERVICE_METRICS_DIR": "/run/ce/metrics"})
    environ = {"PROMETHEUS_MULTIPROC_DIR": "/run/kit-metrics"}
    assert metrics_folder_named(named, environ) == ("service.metrics_dir", "/run/ce/metrics")
    assert metrics_folder_named(Settings(), environ) == (
        "PROMETHEUS_MULTIPROC_DIR",
        "/run/kit-metrics",
    )
    assert metrics_folder_named(Settings(), {}) == ("PROMETHEUS_MULTIPROC_DIR", "")


def test_a_plain_cluster_needs_no_client_key(env: dict[str, str], tmp_path: Path) -> None:
    """The TLS files' defaults name a development checkout's: with TLS off nothing reads them."""
    nowhere = {
        "cluster.cert_file": str(tmp_path / "c.crt"),
        "cluster.key_file": str(tmp_path / "c.key"),
    }
    tls = _settings(env, **nowhere)
    assert [p.setting for p in check_files(tls, ["verifier"])] == ["cluster.key_file"]
    plain = _settings(env, **nowhere, **{"cluster.tls": "false"})
    assert check_files(plain, ["verifier"]) == []


def test_a_terminal_type_with_no_profile_stops_a_verifier(env: dict[str, str]) -> None:
    credentials = Path(env["CODEENGINE_KEYS_CREDENTIALS_FILE"])
    document = json.loads(credentials.read_text())
    document["clients"][0]["terminal_type"] = "gate"
    credentials.write_text(json.dumps(document))
    assert check_files(_settings(env), ["verifier"]) == []
    document["clients"][0]["terminal_type"] = "gait"
    credentials.write_text(json.dumps(document))
    name = document["clients"][0]["client"]
    assert check_files(_settings(env), ["verifier"]) == [
        Problem(
            "keys.credentials_file",
            f"client {name!r}: no terminal profile 'gait' in the fusion file (codes.fusion_file)",
        )
    ]
    # An issuer shows no terminal anything.
    assert check_files(_settings(env), ["issuer"]) == []
