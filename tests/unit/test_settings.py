"""Settings: precedence, strictness, and the shipped configuration files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from codeengine.settings import Settings, SettingsError, load_settings, parse_nodes

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_engine_config_loads_and_equals_the_defaults() -> None:
    assert load_settings(ROOT / "configs" / "engine.toml", env={}).service == Settings().service
    shipped = load_settings(ROOT / "configs" / "engine.toml", env={}).cluster
    assert replace(shipped, nodes=Settings().cluster.nodes) == Settings().cluster
    nodes = parse_nodes(load_settings(ROOT / "configs" / "engine.toml", env={}).cluster.nodes)
    assert [port for _, port in nodes] == list(range(7000, 7006))


def test_environment_beats_file_beats_default(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[service]\nissuer_port = 9000\nworkers = 3\n")
    settings = load_settings(config, env={"CODEENGINE_SERVICE_WORKERS": "5"})
    assert (settings.service.issuer_port, settings.service.workers) == (9000, 5)
    assert settings.service.verifier_port == 8081


@pytest.mark.parametrize(
    ("toml", "env", "named"),
    [
        ("[service]\nisuer_port = 1\n", {}, "service.isuer_port"),
        ("[servise]\n", {}, "[servise]"),
        ("[service]\nworkers = '2'\n", {}, "service.workers"),
        ("[codes]\ndisplay_ttl_s = 1.5\n", {}, "codes.display_ttl_s"),
        ("", {"CODEENGINE_SERVICE_WORKRS": "1"}, "CODEENGINE_SERVICE_WORKRS"),
        ("", {"CODEENGINE_NOPE": "1"}, "CODEENGINE_NOPE"),
        ("", {"CODEENGINE_SERVICE_WORKERS": "many"}, "CODEENGINE_SERVICE_WORKERS"),
        ("[cluster]\nnodes = 'localhost'\n", {}, "cluster.nodes"),
        ("[service]\ngc_young_threshold = -1\n", {}, "service.gc_young_threshold"),
        ("[service]\ngc_young_threshold = 3000000000\n", {}, "service.gc_young_threshold"),
        ("[cluster]\nkey_file = ''\n", {}, "cluster.cert_file and cluster.key_file"),
        ("", {"CODEENGINE_CLUSTER_CERT_FILE": ""}, "cluster.cert_file and cluster.key_file"),
        ("[cluster]\npassword_file = ''\n", {}, "cluster.password_file"),
        ("[cluster]\nca_file = ''\n", {}, "cluster.ca_file"),
        ("[cluster]\nserver_name = ''\n", {}, "cluster.server_name"),
        ("[cluster]\ntls = 'yes'\n", {}, "cluster.tls"),
        ("", {"CODEENGINE_CLUSTER_TLS": "maybe"}, "CODEENGINE_CLUSTER_TLS"),
    ],
    ids=[
        "typo-key",
        "typo-section",
        "wrong-type",
        "float-for-int",
        "env-typo",
        "env-unknown",
        "env-not-int",
        "bad-nodes",
        "negative-gc-threshold",
        "huge-gc-threshold",
        "key-without-cert",
        "env-cert-without-key",
        "user-without-password",
        "tls-without-ca",
        "tls-without-server-name",
        "tls-not-a-bool",
        "env-tls-not-a-bool",
    ],
)
def test_bad_settings_fail_naming_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], named: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_settings(config, env=env)


def test_parse_nodes() -> None:
    assert parse_nodes("127.0.0.1:7000, [::1]:7001") == (("127.0.0.1", 7000), ("::1", 7001))
    with pytest.raises(SettingsError):
        parse_nodes("127.0.0.1:70000")


def test_logging_settings_come_from_the_environment_and_are_checked() -> None:
    env = {"CODEENGINE_LOGGING_MAX_BYTES": "8192", "CODEENGINE_LOGGING_REPEAT_WINDOW_S": "0"}
    logging = load_settings(env=env).logging
    assert (logging.max_bytes, logging.repeat_window_s, logging.backups) == (8192, 0.0, 5)
    for key, value in [("MAX_BYTES", "100"), ("BACKUPS", "-1"), ("LEVEL", "verbose")]:
        with pytest.raises(SettingsError, match=f"logging.{key.lower()}"):
            load_settings(env={f"CODEENGINE_LOGGING_{key}": value})


def test_the_cluster_is_secure_by_default_and_plain_by_choice() -> None:
    cluster = load_settings(env={}).cluster
    assert cluster.tls and cluster.username == "codeengine"
    assert cluster.ca_file.startswith("var/redis/") and cluster.password_file.startswith("var/")
    plain = load_settings(
        env={
            "CODEENGINE_CLUSTER_TLS": "false",
            "CODEENGINE_CLUSTER_USERNAME": "",
            "CODEENGINE_CLUSTER_PASSWORD_FILE": "",
            "CODEENGINE_CLUSTER_CA_FILE": "",
        }
    ).cluster
    assert (plain.tls, plain.username, plain.password_file) == (False, "", "")


def test_the_retired_scan_log_length_is_refused_naming_its_successor(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[verifier]\nscan_log_max_len = 1000000\n")
    with pytest.raises(SettingsError, match=r"scan_log_max_len: replaced by .*scan_log_max_age_s"):
        load_settings(config, env={})
    env = {"CODEENGINE_VERIFIER_SCAN_LOG_MAX_LEN": "5"}
    with pytest.raises(SettingsError, match="CODEENGINE_VERIFIER_SCAN_LOG_MAX_LEN: replaced"):
        load_settings(env=env)


def test_log_settings_come_from_the_environment_and_are_checked() -> None:
    env = {"CODEENGINE_CHANGES_MAX_AGE_S": "3600", "CODEENGINE_VERIFIER_SCAN_LOG_MAX_AGE_S": "120"}
    settings = load_settings(env=env)
    assert (settings.changes.max_age_s, settings.verifier.scan_log_max_age_s) == (3600, 120)
    for key, value in [
        ("CHANGES_MAX_AGE_S", "59"),
        ("VERIFIER_SCAN_LOG_MAX_AGE_S", "0"),
        ("CHANGES_BUFFER_MAX", "999"),
        ("VERIFIER_SCAN_FLUSH_MS", "0"),
    ]:
        name = key.split("_", 1)[1].lower()
        with pytest.raises(SettingsError, match=name):
            load_settings(env={f"CODEENGINE_{key}": value})
