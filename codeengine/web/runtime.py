"""Typed application state shared by both services, and its start-up and shutdown.

Each process keeps its keys in step with the store: an issuer holds the sealed keyring (opened
with its key-encryption key), a verifier only the public trust list. A background task re-reads
them every ``codes.keyring_refresh_s``, so a rotation made through any issuer reaches every
process within about a second.
"""

from __future__ import annotations

__all__ = [
    "ALIAS_KEY",
    "CLOCK",
    "FENCE",
    "KEYS",
    "MAC_KEYS",
    "PEPPER",
    "PROFILE",
    "RULES",
    "SETTINGS",
    "STORE",
    "UNKNOWN_KID_REREAD_S",
    "Clock",
    "KeyState",
    "MACKeyState",
    "attach_runtime",
    "check_store_profile",
    "refresh_keys",
    "require_profile",
    "store_settings",
]

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aiohttp import web

from codeengine.code.errors import (
    CodeEngineError,
    CryptoUnavailable,
    KeyringError,
    NotWriter,
    ProfileMismatch,
    Reason,
    VersionConflict,
)
from codeengine.code.fencing import Lease, Role
from codeengine.code.keyring import Keyring
from codeengine.code.keyvault import (
    NONCE_BYTES,
    SealedKeyring,
    check_profile,
    open_keyring,
    seal_keyring,
)
from codeengine.code.profile import PROFILE_SETTING, Profile
from codeengine.code.rules import RuleSet, load_rules
from codeengine.code.secret import Secret
from codeengine.code.signedlist import ListKind
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations
from codeengine.keyfiles import load_keyring, load_mac_keyset, load_pepper, load_trust_anchor
from codeengine.metrics import flush_hot
from codeengine.settings import Settings, parse_nodes
from codeengine.store.adapters._sealed import StoreKeys
from codeengine.store.fence import FenceKeeper
from codeengine.store.port import Store
from codeengine.store.redisstore import RedisStore, StoreSettings
from codeengine.store.security import load_security
from codeengine.web.auth import CREDENTIALS, load_credentials
from codeengine.web.gauges import ServiceGauges
from codeengine.web.health import READINESS_CHECKS, ReadinessCheck
from codeengine.web.metrics import METRICS_CACHE, MetricsCache, render_metrics

log = logging.getLogger("codeengine.store.keyspace")

UNKNOWN_KID_REREAD_S = 0.25
"""The least time between two reads of the trust list made for codes of an unknown key."""


class Clock(Protocol):
    """Seconds since the epoch; services read time only through this, so tests can set it."""

    def __call__(self) -> float: ...


@dataclass
class KeyState:
    """This process's view of the keys, and the error that kept it from loading them."""

    keyring: Keyring | None = None
    trust: TrustList | None = None
    version: int = 0
    error: CodeEngineError | None = None
    kek: Secret | None = None
    revocations: Revocations = field(default_factory=Revocations)
    refreshed_at: float | None = None
    """When the keys were last read from the store (the app's clock), for the trust list's age
    (codeengine.web.gauges); None until they have been."""
    revocations_at: int = 0
    """When ``revocations`` were read from the store (verifiers)."""
    trust_raw: bytes | None = None
    """The stored trust list's bytes ``trust`` was read from (verifiers): unchanged bytes are
    not parsed again, so the list keeps its identity and its published form its ETag."""
    signed: dict[ListKind, bytes] = field(default_factory=dict)
    """The signed lists the store holds, by kind, as served."""
    anchors: Keyring | None = None
    """The trust anchor that signs those lists (issuers only; issuer.signedlists)."""

    _reread: asyncio.Future[bool] | None = field(default=None, repr=False)
    _reread_at: float = field(default=-math.inf, repr=False)

    async def reread_trust(self, store: Store, settings: Settings) -> bool:
        """Read the trust list again now, for a code that names a key this verifier lacks;
        whether the list changed.

        A rotation that takes effect at once (``activate_in_s`` 0) is in the store before the
        issuer signs with the new key, but this process's next periodic read may be up to
        ``codes.keyring_refresh_s`` away, and a valid code would be refused ``UNKNOWN_KID``
        meanwhile. One read at most every ``UNKNOWN_KID_REREAD_S``, shared by every scan
        that asks while it runs: a flood of unknown key ids costs the store nothing more.
        """
        reread = self._reread
        if reread is None:
            now = time.monotonic()
            if now - self._reread_at < UNKNOWN_KID_REREAD_S:
                return False
            self._reread_at = now
            reread = self._reread = asyncio.ensure_future(self._reread_once(store, settings))
        return await asyncio.shield(reread)

    async def _reread_once(self, store: Store, settings: Settings) -> bool:
        before = self.trust_raw
        try:
            await refresh_keys(self, store, settings, signs=False)
        except CodeEngineError:
            # The periodic refresher reports it (readiness); this scan keeps its answer.
            return False
        finally:
            self._reread = None
        return self.trust_raw != before

    def require_keyring(self) -> Keyring:
        """The keyring (issuers), or the reason it is missing."""
        if self.keyring is None:
            raise self.error or KeyringError("keyring not loaded yet")
        return self.keyring

    def require_trust(self) -> TrustList:
        """The trust list, or the reason it is missing."""
        if self.trust is None:
            raise self.error or KeyringError("trust list not loaded yet")
        return self.trust


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
KEYS = web.AppKey("keys", KeyState)
PEPPER = web.AppKey("pepper", Secret)
"""Identifier to pseudonym: issuers only."""
ALIAS_KEY = web.AppKey("alias_key", Secret)
"""The keyed hash of alias credentials and licences: issuers and verifiers."""
PROFILE = web.AppKey("profile", Profile)
"""The cryptographic profile (``crypto.profile``): its ``mac`` keys pseudonyms and alias hashes."""

CLOCK = web.AppKey("clock", Clock)
RULES = web.AppKey("rules", RuleSet)
FENCE = web.AppKey("fence", FenceKeeper)
HOT_METRICS_FLUSH_S = 1.0
"""How often the hot paths' counts reach Prometheus (a ``/metrics`` rendering flushes its own
worker's)."""


def store_settings(settings: Settings) -> StoreSettings:
    """The store adapter's settings from the service settings."""
    cluster = settings.cluster
    return StoreSettings(
        nodes=parse_nodes(cluster.nodes),
        read_deadline_ms=cluster.read_deadline_ms,
        write_deadline_ms=cluster.write_deadline_ms,
        replica_ack_timeout_ms=cluster.replica_ack_timeout_ms,
        replicas_to_ack=cluster.replicas_to_ack,
        security=load_security(
            username=cluster.username,
            password_file=cluster.password_file,
            tls=cluster.tls,
            ca_file=cluster.ca_file,
            cert_file=cluster.cert_file,
            key_file=cluster.key_file,
            server_name=cluster.server_name,
        ),
    )


async def _seed_keyring(store: Store, settings: Settings, kek: Secret) -> None:
    """Import the configured first keyring when the store holds none (one process wins).

    The seal records the profile: from now on the store is in it (codeengine.code.keyvault).
    """
    keyring = load_keyring(Path(settings.keys.keyring_file))
    profile = settings.crypto.selected()
    sealed = seal_keyring(keyring, 1, kek, os.urandom(NONCE_BYTES), profile)
    trust = TrustList.from_keyring(keyring).to_json().encode()
    with contextlib.suppress(VersionConflict):
        await store.put_keyring(0, sealed.pack(), 1, trust)


async def refresh_keys(state: KeyState, store: Store, settings: Settings, *, signs: bool) -> None:
    """Bring ``state`` up to the store's keyring (issuers) or trust list (verifiers)."""
    if signs:
        assert state.kek is not None
        raw = await store.get_keyring()
        if raw is None:
            await _seed_keyring(store, settings, state.kek)
            raw = await store.get_keyring()
            if raw is None:
                raise KeyringError("the store holds no keyring")
        sealed = SealedKeyring.unpack(raw)
        if sealed.version < state.version:
            # Someone wrote an older keyring back: it may hold a retired or compromised key.
            raise KeyringError(
                f"the store holds keyring version {sealed.version}, older than {state.version}"
            )
        if sealed.version != state.version or state.keyring is None:
            keyring = open_keyring(sealed, state.kek, settings.crypto.selected())
            state.keyring, state.trust = keyring, TrustList.from_keyring(keyring)
            state.version = sealed.version
            log.info("keyring version %d loaded", sealed.version)
    else:
        now = int(time.time())
        raw, revocations = await asyncio.gather(store.get_trust(), store.revocations(now))
        if raw is None:
            raise KeyringError("no trust list published yet; start an issuer first")
        if raw != state.trust_raw or state.trust is None:
            # The keyring was (re)written with this list: check the store's profile again.
            await check_store_profile(store, settings.crypto.selected())
            state.trust = TrustList.from_json(raw)
            state.trust_raw = raw
        if revocations != state.revocations:
            state.revocations = revocations
        state.revocations_at = now
    await _refresh_signed(state, store)
    state.error = None


async def check_store_profile(store: Store, profile: Profile) -> None:
    """ProfileMismatch if the store was seeded in another profile than ``profile``; nothing
    while it holds no keyring (the first issuer seeds it in its own profile)."""
    raw = await store.get_keyring()
    if raw is not None:
        check_profile(SealedKeyring.unpack(raw), profile)


def require_profile(settings: Settings) -> Profile:
    """The configured profile, once the linked libraries are known to offer it; else
    CryptoUnavailable naming the setting, so that a service never starts half able."""
    profile = settings.crypto.selected()
    try:
        profile.check_support()
    except CryptoUnavailable as exc:
        raise CryptoUnavailable(f"{PROFILE_SETTING} is {profile.name.value!r}: {exc}") from exc
    return profile


async def _refresh_signed(state: KeyState, store: Store) -> None:
    """Take the signed lists the store holds (an issuer signs them; every process serves them)."""
    kinds = tuple(ListKind)
    stored = await asyncio.gather(*(store.get_signed_list(kind) for kind in kinds))
    for kind, (_, document) in zip(kinds, stored, strict=True):
        if document is not None and document != state.signed.get(kind):
            state.signed[kind] = document


async def _cancel(*tasks: asyncio.Task[None]) -> None:
    """Cancel background tasks and wait for them to end."""
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _flush_metrics_every(interval_s: float) -> None:
    """Add the hot paths' counts to Prometheus every ``interval_s`` (see codeengine.metrics)."""
    while True:
        await asyncio.sleep(interval_s)
        flush_hot()


async def _first_refresh(
    state: KeyState, store: Store, settings: Settings, clock: Clock, *, signs: bool, owned: bool
) -> None:
    """Read the keys at start-up; a failure is kept for readiness, not raised, but for a store
    seeded in the other profile (ProfileMismatch), which stops the service, closing ``store``
    if it is the service's own."""
    try:
        await refresh_keys(state, store, settings, signs=signs)
        state.refreshed_at = clock()
    except ProfileMismatch:
        # Never serve past it: every pseudonym and seal would be the other profile's.
        if owned:
            await store.close()
        raise
    except CodeEngineError as exc:
        # Readiness names the cause from the first answer on, not only once the refresher has
        # failed too.
        state.error = exc


async def _keep_keys_fresh(
    state: KeyState, store: Store, settings: Settings, clock: Clock, *, signs: bool
) -> None:
    # Verifiers also re-read revocations, which must take effect within a second.
    interval = settings.codes.keyring_refresh_s
    if not signs:
        interval = min(interval, settings.verifier.revocation_refresh_s)
    while True:
        try:
            await refresh_keys(state, store, settings, signs=signs)
            state.refreshed_at = clock()
        except CodeEngineError as exc:
            # Keep serving with the keys already loaded; readiness reports the problem.
            state.error = exc
        except Exception as exc:
            # A malformed stored value must not end the refresher: revocations would freeze.
            log.exception("key refresh failed")
            state.error = KeyringError(f"key refresh failed: {type(exc).__name__}")
        await asyncio.sleep(interval)


class MACKeyState:
    """The MAC keysets this process holds, re-read from their files every ``mac_refresh_s``.

    A rotation (``codeengine audit rotate-mac``) adds a key to the file and makes it current;
    the old keys stay in it, so values sealed before keep opening, and each process seals with
    the new key from its next re-read on (or its restart).
    """

    def __init__(self) -> None:
        self.keys: StoreKeys | None = None
        self._stores: list[tuple[object, str]] = []

    def load(self, settings: Settings, *, signs: bool) -> None:
        """Read the files: the record keyset, and the audit keyset for an issuer."""
        mac = settings.crypto.selected().mac
        records = load_mac_keyset(Path(settings.keys.record_mac_file), mac)
        audit = load_mac_keyset(Path(settings.keys.audit_mac_file), mac) if signs else None
        self.keys = StoreKeys(records, audit)
        for store, _service in self._stores:
            if isinstance(store, RedisStore):
                store.keys = self.keys

    def attach(self, store: object, service: str) -> None:
        """Give ``store`` these keys now and after every re-read."""
        self._stores.append((store, service))
        if isinstance(store, RedisStore):
            store.keys = self.keys
            store.service = service

    def require(self) -> StoreKeys:
        """The keys, or the reason they are missing."""
        if self.keys is None:
            raise KeyringError("MAC keys not loaded yet")
        return self.keys


MAC_KEYS = web.AppKey("mac_keys", MACKeyState)


async def _keep_macs_fresh(state: MACKeyState, settings: Settings, *, signs: bool) -> None:
    while True:
        await asyncio.sleep(settings.keys.mac_refresh_s)
        try:
            state.load(settings, signs=signs)
        except CodeEngineError:
            # Keep the keys already loaded; a rotation half-written is read again next time.
            log.exception("MAC keyset re-read failed")


async def _start_fence(app: web.Application, settings: Settings) -> FenceKeeper | None:
    """Start beating for this endpoint's city write lease, if it is one of a city's endpoints."""
    store = app[STORE]
    if not settings.service.city or not isinstance(store, RedisStore):
        return None
    keeper = FenceKeeper(store, settings.service.city, Role(settings.service.role), settings.fence)
    store.fence = keeper
    app[FENCE] = keeper
    with contextlib.suppress(CodeEngineError):
        await keeper.beat()
    keeper.start()
    return keeper


def _fence_ready(app: web.Application) -> ReadinessCheck:
    """Not ready while a planned handover holds the lease for the city's other endpoint."""

    async def check() -> None:
        keeper = app.get(FENCE)
        if keeper is not None and keeper.draining:
            raise NotWriter("handed over to the city's other endpoint", writer=keeper.role.other)

    return check


def _metrics_cache(
    app: web.Application, settings: Settings, service: str, state: KeyState, *, signs: bool
) -> MetricsCache:
    """The app's /metrics renderings: the registry, then this worker's state gauges."""

    def lease() -> tuple[int, Lease] | None:
        keeper = app.get(FENCE)
        if keeper is None or keeper.lease is None:
            return None
        return keeper.city, keeper.lease

    # The app's clock as it is when /metrics is rendered (a test may set it after this).
    gauges = ServiceGauges(service, state, lambda: app[CLOCK](), signs=signs, lease=lease)
    return MetricsCache(
        lambda: render_metrics(gauges), settings.service.metrics_cache_s, time.monotonic
    )


def attach_runtime(
    app: web.Application, settings: Settings, store: Store | None = None, *, signs: bool
) -> None:
    """Give ``app`` its settings, store, keys and credentials, with readiness checks.

    A service that ``signs`` is ready only with a signing key valid now; one that only verifies
    needs a trust list with at least one key valid now.
    """
    app[SETTINGS] = settings
    # The national profile on a library without SM3 or SM4 stops here, naming the setting.
    app[PROFILE] = require_profile(settings)
    if signs:
        # A malformed rules file stops the issuer here, naming the field, before it serves.
        app[RULES] = load_rules(settings.codes.rules_path())
    state = KeyState()
    app[KEYS] = state
    app[MAC_KEYS] = MACKeyState()
    if CLOCK not in app:
        app[CLOCK] = time.time
    service = "issuer" if signs else "verifier"
    app[METRICS_CACHE] = _metrics_cache(app, settings, service, state, signs=signs)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        owned = store is None
        app[STORE] = RedisStore(store_settings(settings)) if store is None else store
        workers = settings.service.workers or (os.cpu_count() or 1)
        app[CREDENTIALS] = load_credentials(Path(settings.keys.credentials_file), 1 / workers)
        # Verifiers hash scanned alias credentials (card-code fusion) with the alias key; only
        # issuers turn identifiers into pseudonyms (the pepper) and write audit entries.
        app[ALIAS_KEY] = load_pepper(Path(settings.keys.alias_key_file))
        mac = app[MAC_KEYS]
        mac.load(settings, signs=signs)
        mac.attach(app[STORE], service)
        if signs:
            app[PEPPER] = load_pepper(Path(settings.keys.pepper_file))
            state.kek = load_pepper(Path(settings.keys.kek_file))
            state.anchors = load_trust_anchor(Path(settings.keys.trust_anchor_file))
        clock = app[CLOCK]
        await _first_refresh(state, app[STORE], settings, clock, signs=signs, owned=owned)
        task = asyncio.create_task(
            _keep_keys_fresh(state, app[STORE], settings, clock, signs=signs)
        )
        macs = asyncio.create_task(_keep_macs_fresh(mac, settings, signs=signs))
        flusher = asyncio.create_task(_flush_metrics_every(HOT_METRICS_FLUSH_S))
        keeper = await _start_fence(app, settings) if signs else None
        yield
        if keeper is not None:
            await keeper.stop()
        await _cancel(task, flusher, macs)
        flush_hot()
        if owned:
            await app[STORE].close()

    async def cluster_ready() -> str | None:
        # Ready while any primary answers: a down shard is every worker's, not this one's.
        silent = await app[STORE].ping(every=False)
        return Reason.STORE_UNAVAILABLE.value if silent else None

    async def keys_ready() -> None:
        now = int(app[CLOCK]())
        if signs:
            state.require_keyring().signing_key_at(now)
        elif not any(key.valid_at(now) for key in state.require_trust()):
            raise KeyringError("no trusted key is valid now")

    app.cleanup_ctx.append(lifecycle)
    checks: dict[str, ReadinessCheck] = {"cluster": cluster_ready, "keys": keys_ready}
    if signs and settings.service.city:
        checks["fence"] = _fence_ready(app)
    app[READINESS_CHECKS] = checks
