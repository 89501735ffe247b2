"""Typed application state shared by both services, and its start-up and shutdown."""

from __future__ import annotations

__all__ = ["KEYRING", "SETTINGS", "STORE", "KeyringHolder", "attach_runtime"]

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from codeengine.devkeys import load_keyring
from codeengine.errors import CodeEngineError, KeyringError
from codeengine.keyring import Keyring
from codeengine.redisstore import RedisStore, StoreSettings
from codeengine.settings import Settings, parse_nodes
from codeengine.store import Store
from codeengine.web.health import READINESS_CHECKS, ReadinessCheck


@dataclass
class KeyringHolder:
    """The loaded keyring, or the error that kept it from loading (reported by /readyz)."""

    keyring: Keyring | None = None
    error: CodeEngineError | None = field(default=None)

    def require(self) -> Keyring:
        """The keyring, or the load error."""
        if self.keyring is None:
            raise self.error or KeyringError("keyring not loaded")
        return self.keyring


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
KEYRING = web.AppKey("keyring", KeyringHolder)


def store_settings(settings: Settings) -> StoreSettings:
    """The store adapter's settings from the service settings."""
    cluster = settings.cluster
    return StoreSettings(
        nodes=parse_nodes(cluster.nodes),
        read_deadline_ms=cluster.read_deadline_ms,
        write_deadline_ms=cluster.write_deadline_ms,
        replica_ack_timeout_ms=cluster.replica_ack_timeout_ms,
        replicas_to_ack=cluster.replicas_to_ack,
    )


def attach_runtime(
    app: web.Application, settings: Settings, store: Store | None = None, *, signs: bool
) -> None:
    """Give ``app`` its settings, a store and the keyring, with readiness checks for both.

    A service that ``signs`` is ready only with a signing key valid now; one that only verifies
    needs at least one trusted key valid now.
    """
    app[SETTINGS] = settings
    holder = KeyringHolder()
    app[KEYRING] = holder

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        owned = store is None
        app[STORE] = RedisStore(store_settings(settings)) if store is None else store
        try:
            holder.keyring = load_keyring(Path(settings.keys.keyring_file))
        except KeyringError as exc:
            holder.error = exc
        yield
        if owned:
            await app[STORE].close()

    async def cluster_ready() -> None:
        await app[STORE].ping()

    async def keys_ready() -> None:
        now = int(time.time())
        keyring = holder.require()
        if signs:
            keyring.signing_key_at(now)
        elif not any(key.valid_at(now) for key in keyring.public_keys()):
            raise KeyringError("no trusted key is valid now")

    app.cleanup_ctx.append(lifecycle)
    checks: dict[str, ReadinessCheck] = {"cluster": cluster_ready, "keys": keys_ready}
    app[READINESS_CHECKS] = checks
