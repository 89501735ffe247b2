"""What ``codeengine serve`` checks before it starts a worker, and what ``--check`` reports.

Every file a service reads is checked the way the service will read it: each secret exists, is
a regular file, is readable by this user and by no one else (``mode & 0o077 == 0``), and parses;
the rule, fusion and city files parse; the linked OpenSSL offers the configured cryptographic
profile (``crypto.profile``); then the cluster answers, through the project's own
client with TLS and the ACL login as configured, within a deadline, and holds a store seeded
in that profile. A problem is one line that
names the setting and the reason, never a secret's content.

:data:`SECRET_FILES` is the one list of which secret each service reads (docs/security.md draws
the same table); deployment recipes are checked against it.
"""

from __future__ import annotations

__all__ = [
    "ALL_SERVICES",
    "PUBLIC_FILES",
    "SECRET_FILES",
    "SERVICES",
    "Problem",
    "SecretFile",
    "check_cluster",
    "check_files",
    "check_records_store",
    "env_name",
    "preflight",
    "secret_settings",
    "service_files",
]

import asyncio
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from codeengine.code.cities import load_cities
from codeengine.code.errors import (
    CodeEngineError,
    CryptoUnavailable,
    ProfileMismatch,
    StoreUnavailable,
)
from codeengine.code.fusion import load_fusion
from codeengine.code.keyvault import SealedKeyring, check_profile, open_keyring
from codeengine.code.macs import MACAlgorithm
from codeengine.code.profile import PROFILE_SETTING, Profile
from codeengine.code.rules import load_rules
from codeengine.code.secret import Secret
from codeengine.keyfiles import load_keyring, load_mac_keyset, load_pepper, load_trust_anchor
from codeengine.settings import ENV_PREFIX, Settings
from codeengine.store.redisstore import RedisStore
from codeengine.store.security import StoreRefused
from codeengine.web.auth import load_credentials
from codeengine.web.runtime import require_profile, store_settings
from verifier.app import load_foreign

SERVICES = ("issuer", "verifier")
"""The code services (their workers: ``codeengine serve issuer|verifier``)."""
ALL_SERVICES = (*SERVICES, "records")
"""And the records service (``codeengine serve records``: one process, codeengine.records)."""
BOTH = frozenset(SERVICES)
ALL = frozenset(ALL_SERVICES)
ISSUER = frozenset({"issuer"})
RECORDS = frozenset({"records"})


@dataclass(frozen=True, slots=True)
class SecretFile:
    """A setting that names a secret file, and which services read it."""

    setting: str
    """``section.key``, e.g. ``keys.pepper_file``."""
    services: frozenset[str]
    optional: bool = False
    """An empty value means the file is not used (no login, no client certificate)."""
    bootstrap: bool = False
    """Read only while the store holds nothing seeded from it (the first keyring)."""
    tls_only: bool = False
    """Read only with ``cluster.tls`` on (the client certificate's key)."""


SECRET_FILES: tuple[SecretFile, ...] = (
    SecretFile("cluster.password_file", ALL, optional=True),
    SecretFile("cluster.key_file", ALL, optional=True, tls_only=True),
    SecretFile("keys.kek_file", ISSUER),
    SecretFile("keys.pepper_file", ISSUER),
    SecretFile("keys.alias_key_file", BOTH),
    SecretFile("keys.record_mac_file", BOTH),
    SecretFile("keys.audit_mac_file", ISSUER),
    SecretFile("keys.trust_anchor_file", ISSUER),
    SecretFile("keys.credentials_file", ALL),
    SecretFile("keys.keyring_file", ISSUER, bootstrap=True),
    SecretFile("records.password_file", RECORDS, optional=True),
)
"""Every secret file a service reads. Verifiers never read the pepper, the KEK, the keyring, the
audit keyset or the trust anchor (issuers sign the lists terminals cache; verifiers serve
them); no service reads ``keys.checkpoint_key_file`` (ops only). The records service reads its
cluster login, the API credentials and its ClickHouse server's password, and no code key."""


PUBLIC_FILES = ("cluster.ca_file", "cluster.cert_file")
"""Files both services read with ``cluster.tls`` on that are not secret (checked when the
cluster client loads them); an empty value means the file is not used."""


def secret_settings(service: str) -> tuple[str, ...]:
    """The settings naming the secret files ``service`` reads."""
    if service not in ALL_SERVICES:
        raise ValueError(f"service must be one of {ALL_SERVICES}")
    return tuple(f.setting for f in SECRET_FILES if service in f.services)


def service_files(service: str) -> tuple[str, ...]:
    """The settings naming every file ``service`` reads beyond the shipped configuration:
    its secrets, then the cluster's CA and client certificate (what a deployment mounts)."""
    return (*secret_settings(service), *PUBLIC_FILES)


def env_name(setting: str) -> str:
    """The environment variable of a setting: ``keys.pepper_file`` is
    ``CODEENGINE_KEYS_PEPPER_FILE``."""
    section, _, key = setting.partition(".")
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason not to start: the setting to fix, and what is wrong with it."""

    setting: str
    reason: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.reason}"


def _value(settings: Settings, setting: str) -> str:
    section, _, key = setting.partition(".")
    return str(getattr(getattr(settings, section), key))


def _file_problem(path: Path) -> str | None:
    """What keeps ``path`` from being a secret file only its owner can read, if anything."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        return f"{path} cannot be examined: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        return (
            f"{path} is open to group or others (mode {mode:04o}); make it owner-only (chmod 600)"
        )
    if not os.access(path, os.R_OK):
        return f"{path} is not readable by this user (uid {os.getuid()})"
    return None


def _content_problem(setting: str, path: Path) -> str | None:
    """Whether the file parses as the service will read it (the message names the file, never
    its content)."""
    readers: dict[str, Callable[[Path], object]] = {
        "keys.kek_file": load_pepper,
        "keys.pepper_file": load_pepper,
        "keys.alias_key_file": load_pepper,
        # The file is the same in both profiles: parsing it does not depend on the MAC.
        "keys.record_mac_file": lambda p: load_mac_keyset(p, MACAlgorithm.HMAC_SHA256),
        "keys.audit_mac_file": lambda p: load_mac_keyset(p, MACAlgorithm.HMAC_SHA256),
        "keys.trust_anchor_file": load_trust_anchor,
        "keys.keyring_file": load_keyring,
        "keys.credentials_file": load_credentials,
    }
    reader = readers.get(setting)
    if reader is None:
        return None
    try:
        reader(path)
    except (CodeEngineError, ValueError) as exc:
        return str(exc)
    return None


def check_files(settings: Settings, services: Sequence[str]) -> list[Problem]:
    """Every problem with the files ``services`` read: secrets first, then the shipped or
    configured rule, fusion and city files."""
    problems = _support_problems(settings, services)
    for secret in SECRET_FILES:
        if not secret.services.intersection(services):
            continue
        if secret.tls_only and not settings.cluster.tls:
            continue
        value = _value(settings, secret.setting)
        if not value:
            if not secret.optional and not secret.bootstrap:
                problems.append(Problem(secret.setting, "not set"))
            continue
        path = Path(value)
        if secret.bootstrap and not path.exists():
            # Needed only if the store holds no keyring yet: check_cluster asks.
            continue
        found = _file_problem(path) or _content_problem(secret.setting, path)
        if found:
            problems.append(Problem(secret.setting, found))
    codes = settings.codes
    issuer = "issuer" in services
    if issuer:
        problems += _load_problem("codes.rules_file", lambda: load_rules(codes.rules_path()))
    problems += _load_problem("codes.fusion_file", lambda: load_fusion(codes.fusion_path()))
    if "verifier" in services:
        problems += _load_problem(
            "codes.credentials_file, verifier.dcc_trust_file or verifier.shc_trust_file",
            lambda: load_foreign(settings),
        )
    if issuer:
        problems += _load_problem("codes.cities_dir", lambda: load_cities(codes.cities_path()))
    if "verifier" in services and not problems:
        problems += _terminal_problems(settings)
    return problems


def _support_problems(settings: Settings, services: Sequence[str]) -> list[Problem]:
    """The code services refuse a profile the linked OpenSSL does not offer (the records
    service keys nothing)."""
    if not BOTH.intersection(services):
        return []
    try:
        require_profile(settings)
    except CryptoUnavailable as exc:
        return [Problem(PROFILE_SETTING, str(exc).removeprefix(f"{PROFILE_SETTING} "))]
    return []


def _terminal_problems(settings: Settings) -> list[Problem]:
    """A verifier refuses to start when a client's terminal type names no profile of the
    fusion file (a typo would show that terminal the default profile): say so here."""
    profiles = load_fusion(settings.codes.fusion_path()).terminals
    clients = load_credentials(Path(settings.keys.credentials_file)).by_key_hash.values()
    return [
        Problem(
            "keys.credentials_file",
            f"client {client.name!r}: no terminal profile {client.terminal_type!r} in the "
            "fusion file (codes.fusion_file)",
        )
        for client in clients
        if client.terminal_type is not None and client.terminal_type not in profiles
    ]


def _load_problem(setting: str, load: Callable[[], object]) -> list[Problem]:
    """A rule, fusion or city file that does not load (RulesError, FusionError and
    CityTableError are ValueErrors naming the file and field)."""
    try:
        load()
    except (ValueError, OSError) as exc:
        return [Problem(setting, str(exc))]
    return []


def _profile_problem(raw: bytes | None, profile: Profile) -> Problem | None:
    """Whether the store was seeded in another profile than the setting names."""
    if raw is None:
        return None
    try:
        check_profile(SealedKeyring.unpack(raw), profile)
    except ProfileMismatch as exc:
        return Problem(PROFILE_SETTING, str(exc).removeprefix(f"{PROFILE_SETTING} "))
    return None


@dataclass(frozen=True, slots=True)
class _IssuerKeys:
    """What an issuer brings to the store: its KEK, and whether a first keyring is at hand."""

    kek: Secret
    keyring_file: str
    has_keyring_file: bool


async def _store_problem(
    store: RedisStore, issuer: _IssuerKeys | None, profile: Profile | None
) -> Problem | None:
    """Whether the cluster answers every primary; for a code service, whether the store was
    seeded in its profile; for an issuer, whether its KEK opens the stored keyring, or its
    keyring file can seed an empty store."""
    await store.ping()
    if profile is None:
        return None
    raw = await store.get_keyring()
    mismatch = _profile_problem(raw, profile)
    if mismatch is not None or issuer is None:
        return mismatch
    if raw is None:
        if not issuer.has_keyring_file:
            return Problem(
                "keys.keyring_file",
                f"{issuer.keyring_file or '(not set)'} does not exist and the store holds no "
                "keyring to start from",
            )
        return None
    try:
        open_keyring(SealedKeyring.unpack(raw), issuer.kek, profile)
    except (CodeEngineError, ValueError) as exc:
        return Problem("keys.kek_file", f"does not open the keyring the store holds ({exc})")
    return None


async def _reach(
    store: RedisStore,
    issuer: _IssuerKeys | None,
    profile: Profile | None,
    nodes: str,
    deadline_s: float,
) -> Problem | None:
    try:
        async with asyncio.timeout(deadline_s):
            return await _store_problem(store, issuer, profile)
    except StoreRefused as exc:
        return Problem(exc.setting, str(exc))
    except (StoreUnavailable, TimeoutError) as exc:
        detail = str(exc) if isinstance(exc, StoreUnavailable) else "timed out"
        return Problem(
            "cluster.nodes",
            f"unreachable: no answer from {nodes} within {deadline_s:g} s ({detail})",
        )
    finally:
        await store.close()


def check_cluster(settings: Settings, services: Sequence[str], deadline_s: float) -> Problem | None:
    """Whether the cluster answers within ``deadline_s``, telling a wrong setting (a refused
    login or certificate, naming it) from a cluster that cannot be reached. Files are read
    here, before the event loop runs; the loop only talks to the cluster."""
    try:
        tuned = store_settings(settings)
    except StoreRefused as exc:
        return Problem(exc.setting, str(exc))
    issuer = None
    if "issuer" in services:
        keys = settings.keys
        try:
            kek = load_pepper(Path(keys.kek_file))
        except CodeEngineError as exc:
            return Problem("keys.kek_file", str(exc))
        present = bool(keys.keyring_file) and Path(keys.keyring_file).is_file()
        issuer = _IssuerKeys(kek, keys.keyring_file, present)
    deadline_ms = max(1, int(deadline_s * 1000))
    store = RedisStore(replace(tuned, read_deadline_ms=deadline_ms))
    profile = settings.crypto.selected() if BOTH.intersection(services) else None
    return asyncio.run(_reach(store, issuer, profile, settings.cluster.nodes, deadline_s))


def check_records_store(settings: Settings) -> Problem | None:
    """Whether the records service can keep its data: the embedded engine's folder can be made
    and written (opening it is the service's: one process at a time may), or a server is
    named."""
    records = settings.records
    if records.server_url:
        return None
    folder = Path(records.path)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return Problem("records.path", f"{existing} is not a folder this user can write")
    return None


def preflight(settings: Settings, services: Sequence[str], deadline_s: float) -> list[Problem]:
    """Every file problem of ``services``; with none, the cluster's answer (or its problem)."""
    problems = check_files(settings, services)
    if "records" in services:
        found_store = check_records_store(settings)
        problems += [found_store] if found_store else []
    if problems:
        return problems
    found = check_cluster(settings, services, deadline_s)
    return [] if found is None else [found]
