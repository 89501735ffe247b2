"""Settings, parsed once at start-up into frozen values.

Precedence: environment (``CODEENGINE_<SECTION>_<KEY>``) beats the TOML file, which beats the
defaults here. An unknown key in the file or the environment, or a value of the wrong type, fails
at start-up with a message that names the key: a typo never silently falls back to a default.
"""

from __future__ import annotations

__all__ = [
    "ENV_PREFIX",
    "ChangeLogSettings",
    "CryptoSettings",
    "LogSettings",
    "RecordsSettings",
    "Settings",
    "SettingsError",
    "load_settings",
    "parse_nodes",
    "source_networks",
]

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

from codeengine.code.fencing import FenceSettings
from codeengine.code.model import CITIES
from codeengine.code.profile import Profile, profile_named
from codeengine.code.shipped import shipped

ENV_PREFIX = "CODEENGINE_"


class SettingsError(ValueError):
    """A setting is unknown, missing or of the wrong type; the message names it."""


MAX_GC_YOUNG_THRESHOLD = 10_000_000
"""A young generation that large already takes seconds to collect; gc takes no more than 2**31."""


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Where the services listen and how they treat connections."""

    host: str = "127.0.0.1"
    issuer_port: int = 8080
    verifier_port: int = 8081
    workers: int = 0
    """Worker processes per service sharing the port (SO_REUSEPORT); 0 means one per core."""
    keepalive_timeout_s: float = 15.0
    shutdown_timeout_s: float = 10.0
    client_max_size_bytes: int = 64 * 1024
    max_connections: int = 10_000
    """Open connections a worker holds; past it the longest-idle keep-alive connection is
    closed to make room, and with none idle the newcomer gets 503 ``OVERLOADED``."""
    max_connections_per_source: int = 1_000
    """Open connections a worker holds from one client IP address, so that one source cannot
    take every place (codeengine.web.admission); 0: no per-source cap."""
    unlimited_sources: str = ""
    """Client networks exempt from the per-source cap, as ``CIDR,CIDR`` (app backends and
    NAT gateways known to hold many connections from one address)."""
    max_in_flight: int = 256
    """Requests a worker works on at once; past it a request is answered 503 ``OVERLOADED``
    with ``Retry-After`` before any work (health checks excepted); 0: no limit."""
    max_loop_lag_ms: int = 0
    """Refuse requests the same way while the event loop runs this late (a timer's lag every
    10 ms); 0: the lag is not watched. docs/performance.md compares the two signals."""
    management_host: str = "127.0.0.1"
    """Where ``/metrics`` is served: loopback unless Prometheus scrapes from elsewhere."""
    issuer_management_port: int = 9080
    verifier_management_port: int = 9081
    """The management ports (``/metrics``); 0: no management listener."""
    metrics_cache_s: float = 1.0
    """How long one rendering of ``/metrics`` is served again before the next is made."""
    backlog: int = 1024
    fast_lane: bool = True
    """Serve display and verify on the fast lane (codeengine.web.fastlane); off: aiohttp only."""
    gc_young_threshold: int = 20_000
    """Tracked objects made (net of those freed) before a young garbage collection; Python's
    own default is 700, which the objects of 50 requests in flight pass (codeengine.web.worker).
    0 keeps the threshold in force (Python's default)."""
    city: int = 0
    """The city whose endpoint this is (configs/cities); 0: one endpoint for the province."""
    role: str = "primary"
    """Which of the city's endpoints this is: ``primary`` or ``backup`` (接口备用环境)."""
    metrics_dir: str = ""
    """The Prometheus multiprocess folder ``codeengine serve`` makes, empties and removes for
    its workers; "": ``$PROMETHEUS_MULTIPROC_DIR`` if set, else a private temporary folder."""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """How to reach the Redis Cluster and how long to wait for it."""

    nodes: str = "127.0.0.1:7000"
    """Startup nodes as ``host:port,host:port``."""
    read_deadline_ms: int = 250
    write_deadline_ms: int = 1500
    replica_ack_timeout_ms: int = 500
    replicas_to_ack: int = 1
    username: str = "codeengine"
    """The ACL user the services log in as; empty: no AUTH at all (a cluster without ACL)."""
    password_file: str = "var/redis/codeengine.password"
    """The file holding that user's password (one line); empty: no AUTH at all."""
    tls: bool = True
    """Speak TLS to every node; off only for a cluster that serves plain text (benchmarks)."""
    ca_file: str = "var/redis/ca.crt"
    """The certificate authority every node's certificate must chain to."""
    cert_file: str = "var/redis/client.crt"
    """The client certificate shown to the nodes (mutual TLS); empty: none."""
    key_file: str = "var/redis/client.key"
    """The private key of ``cert_file``; set both or neither."""
    server_name: str = "localhost"
    """The name every node's certificate must carry, whatever address the node is reached at."""


@dataclass(frozen=True, slots=True)
class KeySettings:
    """Where each secret lives. Who holds which: docs/configuration.md (keys)."""

    keyring_file: str = "var/keys/keyring.json"
    """The first keyring, imported into the store when it holds none (dev and bootstrap)."""
    kek_file: str = "var/keys/kek"
    """The key-encryption key that seals the keyring in the store (issuers only)."""
    pepper_file: str = "var/keys/pepper"
    """Identifier to pseudonym (issuers and the importer only; verifiers never read it)."""
    alias_key_file: str = "var/keys/alias-key"
    """The keyed hash of alias credentials and licences (issuers and verifiers)."""
    record_mac_file: str = "var/keys/record-mac.json"
    """The MAC keyset that seals records and display tokens (issuers and verifiers)."""
    audit_mac_file: str = "var/keys/audit-mac.json"
    """The MAC keyset of the audit chain (issuers and ops' audit commands)."""
    checkpoint_key_file: str = "var/keys/checkpoint-ed25519.pem"
    """The Ed25519 key that signs audit checkpoints (ops only; services never read it)."""
    trust_anchor_file: str = "var/keys/trust-anchor.json"
    """The trust-anchor keyring that signs the trust and revocation lists offline terminals
    fetch, and nothing else (issuers only; verifiers never read it)."""
    mac_refresh_s: float = 10.0
    """How often a service re-reads its MAC keyset files (a rotation is picked up within it)."""
    credentials_file: str = "var/dev-credentials.json"


@dataclass(frozen=True, slots=True)
class CryptoSettings:
    """Which cryptographic profile the deployment uses (codeengine.code.profile)."""

    profile: str = "international"
    """``international`` (Ed25519, HMAC-SHA-256, AES-256-GCM) or ``national`` (SM2, HMAC-SM3,
    SM4-GCM). Chosen once, when the store is first seeded: a service whose setting differs
    from the store's refuses to start (docs/operations.md)."""

    def selected(self) -> Profile:
        """The profile object the services and commands hand to the code that uses it."""
        return profile_named(self.profile)


@dataclass(frozen=True, slots=True)
class CodeSettings:
    """Lifetimes and tolerances of displayed codes."""

    display_ttl_s: int = 120
    clock_skew_s: int = 30
    trust_list_max_age_s: int = 300
    rules_file: str = ""
    """The conversion rules: record types, periods, and the colour of a subject with no data;
    "": the shipped ``rules.toml``."""
    fusion_file: str = ""
    """Card-code fusion: alias types, their scanner prefixes, and what each terminal sees;
    "": the shipped ``fusion.toml``."""
    cities_dir: str = ""
    """The city table, one TOML file per city; "": the shipped ``cities/`` folder."""
    credentials_file: str = ""
    """Other issuers' credentials (EU DCC, SMART Health Cards): the colour each type shows at a
    venue; "": the shipped ``credentials.toml``."""
    keyring_refresh_s: float = 1.0
    """How often each process re-reads the keyring or trust list from the store."""
    signed_list_ttl_s: int = 86_400
    """How long a signed trust or revocation list stays valid; issuers sign it again at half
    that age, and at once when its content changes."""

    def rules_path(self) -> Path:
        """``rules_file``, or the shipped rules."""
        return Path(self.rules_file) if self.rules_file else shipped("rules.toml")

    def fusion_path(self) -> Path:
        """``fusion_file``, or the shipped fusion file."""
        return Path(self.fusion_file) if self.fusion_file else shipped("fusion.toml")

    def credentials_path(self) -> Path:
        """``credentials_file``, or the shipped credential policy."""
        return Path(self.credentials_file) if self.credentials_file else shipped("credentials.toml")

    def cities_path(self) -> Path:
        """``cities_dir``, or the shipped city table."""
        return Path(self.cities_dir) if self.cities_dir else shipped("cities")


@dataclass(frozen=True, slots=True)
class VerifierSettings:
    """Verification policy and the scan log."""

    cross_city: bool = True
    """Accept codes issued for another city of the province (the province-wide code)."""
    degraded_colour: str = "signed"
    """With the store unreachable: answer the signed colour ("signed") or grey ("grey")."""
    batch_max: int = 500
    revocation_refresh_s: float = 0.5
    """How often each verifier re-reads revocations: a revocation is effective within this."""
    scan_flush_ms: int = 100
    scan_buffer_max: int = 50_000
    scan_log_max_age_s: int = 900
    """Scans older than this are trimmed from a city's stream as new ones are added: how long
    the records service may be down or behind without losing a scan (it trims what it read
    itself). Sized from the peak rate and an entry's bytes in docs/configuration.md."""
    scan_count_limit: int = 200_000
    dcc_trust_file: str = ""
    """The EU DCC document signer certificates this verifier trusts (``{"certificates": [...]}``,
    docs/formats.md); "": none, so every ``HC1:`` text answers ``UNKNOWN_KID``."""
    shc_trust_file: str = ""
    """The SMART Health Card issuers this verifier trusts, with their key sets and revocation
    lists (``{"issuers": [...]}``, docs/formats.md); "": none."""
    offline_scan_max_age_s: int = 259_200
    """How old a scan a terminal checked offline may be when it is sent at last (three days):
    older ones are refused (SCAN_TOO_OLD), and a sent scan's id is remembered until then."""
    offline_scan_future_s: int = 300
    """How far ahead of the verifier's clock an offline scan's time may be (a terminal's clock
    runs fast): further ones are refused (SCAN_IN_FUTURE)."""
    offline_batch_max: int = 100
    """Scans per ``POST /v1/scans/offline``: each is a signature check (SM2 about 0.7 ms) and a
    store write, so a request is held far below ``batch_max``."""


@dataclass(frozen=True, slots=True)
class RecordsSettings:
    """The topic library (涉疫数据专题库): where scans and colour changes are kept and queried
    (codeengine.records, docs/records.md)."""

    port: int = 8082
    """The records service's API port (``codeengine serve records``)."""
    management_port: int = 9082
    """Its metrics port, on ``service.management_host``."""
    path: str = "var/records"
    """The embedded engine's data folder (chDB), used when ``server_url`` is empty. One
    process only may open it: the records service."""
    server_url: str = ""
    """A ClickHouse server or cluster (``https://host:8443``); empty for the embedded engine."""
    database: str = "codeengine"
    username: str = "default"
    """The server's user (a server only)."""
    password_file: str = ""
    """A file holding the server user's password (a server only; empty: no password)."""
    retention_days: int = 28
    """Days of scans and changes kept; older day partitions are dropped whole."""
    batch_max: int = 100_000
    """Stream entries read and inserted in one batch, per stream."""
    poll_ms: int = 200
    """How long a read of the streams waits for new entries when they are all drained."""
    max_window_days: int = 31
    """The longest ``from``..``to`` window a query may ask for."""
    page_max: int = 10_000
    """The most rows one page of a query answers."""


@dataclass(frozen=True, slots=True)
class ChangeLogSettings:
    """The change log (codeengine.code.changes) that issuers and the ops commands writing
    subjects keep for the records service."""

    flush_ms: int = 100
    buffer_max: int = 100_000
    """Changes waiting to be written; past it the oldest are dropped (counted, logged)."""
    max_age_s: int = 86_400
    """Changes older than this are trimmed from a city's stream as new ones are added."""


@dataclass(frozen=True, slots=True)
class LogSettings:
    """How much each process logs and how its file is kept (codeengine.logs)."""

    level: str = "info"
    """debug, info, warning or error."""
    max_bytes: int = 10 * 1024 * 1024
    """A log file is rotated before a line would take it past this size."""
    backups: int = 5
    """Rotated files kept (``NAME.log.1`` the newest); 0: the file is emptied instead."""
    repeat_window_s: float = 10.0
    """Repeats of one line within this window are counted, not written; 0 writes every line."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a service process needs to start."""

    service: ServiceSettings = field(default_factory=ServiceSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    keys: KeySettings = field(default_factory=KeySettings)
    crypto: CryptoSettings = field(default_factory=CryptoSettings)
    codes: CodeSettings = field(default_factory=CodeSettings)
    verifier: VerifierSettings = field(default_factory=VerifierSettings)
    changes: ChangeLogSettings = field(default_factory=ChangeLogSettings)
    fence: FenceSettings = field(default_factory=FenceSettings)
    records: RecordsSettings = field(default_factory=RecordsSettings)
    logging: LogSettings = field(default_factory=LogSettings)


def source_networks(spec: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """``"CIDR,CIDR"`` (``service.unlimited_sources``) as networks; ValueError names a bad one."""
    return tuple(ip_network(part.strip()) for part in spec.split(",") if part.strip())


def parse_nodes(spec: str) -> tuple[tuple[str, int], ...]:
    """``"h:p,h:p"`` to ``((h, p), ...)``; a SettingsError for anything else."""
    nodes = []
    for part in spec.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"cluster.nodes: {part!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes)


def _coerce(name: str, declared: Any, value: Any, from_env: bool) -> Any:
    target = {"int": int, "float": float, "str": str, "bool": bool}[str(declared)]
    if from_env:
        if target is bool:
            if value.lower() not in {"true", "false", "1", "0"}:
                raise SettingsError(f"{name}: expected true or false")
            return value.lower() in {"true", "1"}
        try:
            return target(value)
        except ValueError:
            raise SettingsError(f"{name}: expected {target.__name__}") from None
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not target:
        raise SettingsError(f"{name}: expected {target.__name__}, got {type(value).__name__}")
    return value


RETIRED = {
    "verifier.scan_log_max_len": "replaced by verifier.scan_log_max_age_s, the seconds a scan "
    "stream keeps (docs/configuration.md)",
}
"""Settings that no longer exist, with what took their place: said at start-up."""


def _section(name: str, cls: type[Any], table: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if f"{name}.{key}" in RETIRED:
            raise SettingsError(f"setting {name}.{key}: {RETIRED[f'{name}.{key}']}")
        if key not in known:
            raise SettingsError(f"unknown setting {name}.{key}")
        values[key] = _coerce(f"{name}.{key}", known[key].type, value, from_env=False)
    prefix = f"{ENV_PREFIX}{name.upper()}_"
    for env_key, value in env.items():
        if not env_key.startswith(prefix):
            continue
        key = env_key[len(prefix) :].lower()
        if f"{name}.{key}" in RETIRED:
            raise SettingsError(f"setting {env_key}: {RETIRED[f'{name}.{key}']}")
        if key not in known:
            raise SettingsError(f"unknown setting {env_key}")
        values[key] = _coerce(env_key, known[key].type, value, from_env=True)
    try:
        return cls(**values)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (if given) and the environment into frozen settings."""
    env = os.environ if env is None else env
    document: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read settings file {path.name}: {exc}") from exc
    sections: dict[str, type[Any]] = {
        "service": ServiceSettings,
        "cluster": ClusterSettings,
        "keys": KeySettings,
        "crypto": CryptoSettings,
        "codes": CodeSettings,
        "verifier": VerifierSettings,
        "changes": ChangeLogSettings,
        "fence": FenceSettings,
        "records": RecordsSettings,
        "logging": LogSettings,
    }
    for name in document:
        if name not in sections:
            raise SettingsError(f"unknown settings section [{name}]")
    section_names = {f"{ENV_PREFIX}{name.upper()}_" for name in sections}
    for env_key in env:
        if env_key.startswith(ENV_PREFIX) and not any(env_key.startswith(p) for p in section_names):
            if not env_key.startswith((f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}FAILPOINT")):
                raise SettingsError(f"unknown setting {env_key}")
    built = {}
    for name, cls in sections.items():
        table = document.get(name, {})
        if not isinstance(table, dict):
            raise SettingsError(f"[{name}] must be a table")
        built[name] = _section(name, cls, table, env)
    settings = Settings(**built)
    _check_values(settings)
    return settings


def _check_values(settings: Settings) -> None:
    """Checks of values beyond their types."""
    parse_nodes(settings.cluster.nodes)
    _check_cluster_security(settings.cluster)
    _check_service(settings.service)
    _check_logging(settings.logging)
    _check_logs(settings)
    if settings.verifier.degraded_colour not in {"signed", "grey"}:
        raise SettingsError("verifier.degraded_colour: expected signed or grey")
    if not 1 <= settings.verifier.batch_max <= 10_000:
        raise SettingsError("verifier.batch_max: 1 to 10000")
    if not 3600 <= settings.verifier.offline_scan_max_age_s <= 28 * 86_400:
        raise SettingsError("verifier.offline_scan_max_age_s: 3600 to 2419200")
    if not 0 <= settings.verifier.offline_scan_future_s <= 3600:
        raise SettingsError("verifier.offline_scan_future_s: 0 to 3600")
    if not 1 <= settings.verifier.offline_batch_max <= 1000:
        raise SettingsError("verifier.offline_batch_max: 1 to 1000")
    if settings.codes.display_ttl_s < 10:
        raise SettingsError("codes.display_ttl_s: at least 10 seconds")
    if settings.codes.signed_list_ttl_s < 60:
        raise SettingsError("codes.signed_list_ttl_s: at least 60 seconds")
    _check_records(settings.records)
    try:
        settings.crypto.selected()
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _check_records(records: RecordsSettings) -> None:
    if not 1 <= records.retention_days <= 3660:
        raise SettingsError("records.retention_days: 1 to 3660")
    if not 1 <= records.max_window_days <= 366:
        raise SettingsError("records.max_window_days: 1 to 366")
    if not 1_000 <= records.batch_max <= 1_000_000:
        raise SettingsError("records.batch_max: 1000 to 1000000")
    if not 10 <= records.poll_ms <= 10_000:
        raise SettingsError("records.poll_ms: 10 to 10000")
    if not 1 <= records.page_max <= 100_000:
        raise SettingsError("records.page_max: 1 to 100000")
    if not records.server_url and not records.path:
        raise SettingsError("records.path: needed when records.server_url is empty")
    if records.server_url and not records.server_url.startswith(("http://", "https://")):
        raise SettingsError("records.server_url: expected http:// or https://")
    if not records.database.isidentifier():
        raise SettingsError("records.database: letters, digits and _ only")


MIN_LOG_MAX_AGE_S = 60
"""A log stream keeps at least a minute: its consumer's lag while healthy is seconds."""


def _check_logs(settings: Settings) -> None:
    verifier, changes = settings.verifier, settings.changes
    if min(verifier.scan_flush_ms, changes.flush_ms) < 1:
        raise SettingsError("verifier.scan_flush_ms, changes.flush_ms: at least 1")
    if min(verifier.scan_buffer_max, changes.buffer_max) < 1000:
        raise SettingsError("verifier.scan_buffer_max, changes.buffer_max: at least 1000")
    if min(verifier.scan_log_max_age_s, changes.max_age_s) < MIN_LOG_MAX_AGE_S:
        raise SettingsError(
            f"verifier.scan_log_max_age_s, changes.max_age_s: at least {MIN_LOG_MAX_AGE_S}"
        )


def _check_service(service: ServiceSettings) -> None:
    if not 0 <= service.gc_young_threshold <= MAX_GC_YOUNG_THRESHOLD:
        raise SettingsError(
            f"service.gc_young_threshold: 0 (keep the threshold) to {MAX_GC_YOUNG_THRESHOLD}"
        )
    if min(service.max_connections_per_source, service.max_in_flight, service.max_loop_lag_ms) < 0:
        raise SettingsError(
            "service.max_connections_per_source, max_in_flight, max_loop_lag_ms: 0 or more"
        )
    if service.max_connections < 1:
        raise SettingsError("service.max_connections: at least 1")
    if service.metrics_cache_s < 0:
        raise SettingsError("service.metrics_cache_s: 0 or more")
    try:
        source_networks(service.unlimited_sources)
    except ValueError as exc:
        raise SettingsError(f"service.unlimited_sources: {exc}") from None
    if service.role not in {"primary", "backup"}:
        raise SettingsError("service.role: expected primary or backup")
    if service.city and service.city not in CITIES:
        raise SettingsError("service.city: not a city of the province (configs/cities)")


def _check_logging(logging: LogSettings) -> None:
    if logging.level not in {"debug", "info", "warning", "error"}:
        raise SettingsError("logging.level: expected debug, info, warning or error")
    if logging.max_bytes < 4096:
        raise SettingsError("logging.max_bytes: at least 4096")
    if not 0 <= logging.backups <= 100:
        raise SettingsError("logging.backups: 0 to 100")
    if logging.repeat_window_s < 0:
        raise SettingsError("logging.repeat_window_s: 0 or more")


def _check_cluster_security(cluster: ClusterSettings) -> None:
    """Settings of TLS and AUTH that cannot work together fail here, not at the first call."""
    if bool(cluster.username) and not cluster.password_file:
        raise SettingsError("cluster.password_file: needed with cluster.username")
    if bool(cluster.cert_file) != bool(cluster.key_file):
        raise SettingsError("cluster.cert_file and cluster.key_file: set both or neither")
    if cluster.tls:
        if not cluster.ca_file:
            raise SettingsError("cluster.ca_file: needed with cluster.tls on")
        if not cluster.server_name:
            raise SettingsError("cluster.server_name: needed with cluster.tls on")
