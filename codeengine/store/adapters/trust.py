"""Trust: the sealed keyring, the public trust list, the revocation sets and the signed lists.

Owns ``keyspace.KEYRING_KEY``, ``KEYRING_VERSION_KEY``, ``TRUST_KEY``, ``REVOKED_CODES_KEY``,
``REVOKED_KEYS_KEY`` and ``SIGNED_LIST_KEYS`` (one hash tag, one shard).
"""

from __future__ import annotations

__all__ = ["TrustAdapter"]

import asyncio
from typing import Any

from codeengine.code.errors import VersionConflict
from codeengine.code.suites import b64url_decode, b64url_encode
from codeengine.code.verification import Revocations
from codeengine.store import keyspace
from codeengine.store.adapters._base import Adapter, StoreSettings
from codeengine.store.results import KeyringCode, did_write
from codeengine.store.scripts import PUT_KEYRING, PUT_SIGNED_LIST, REVOKE


class TrustAdapter(Adapter):
    """The keyring, its trust list and revocations."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._acknowledged(PUT_KEYRING, REVOKE, PUT_SIGNED_LIST)

    async def get_keyring(self) -> bytes | None:
        """The sealed keyring, or None."""
        fast = await self._hot()
        raw = await fast.get(keyspace.KEYRING_KEY)
        return None if raw is None else bytes(raw)

    async def put_keyring(
        self, expected_version: int, sealed: bytes, version: int, trust: bytes
    ) -> None:
        """Compare-and-set the keyring version and its trust list, acknowledged after WAIT."""

        async def work() -> Any:
            return await self._write_then_wait(
                PUT_KEYRING,
                [keyspace.KEYRING_KEY, keyspace.TRUST_KEY, keyspace.KEYRING_VERSION_KEY],
                [expected_version, sealed, version, trust],
                wrote=did_write,
            )

        code, current = await self._bounded(work, self._settings.write_deadline_ms, "keyring")
        if code == KeyringCode.STALE:
            raise VersionConflict(int(current))

    async def get_trust(self) -> bytes | None:
        """The public trust list JSON, or None."""
        fast = await self._hot()
        raw = await fast.get(keyspace.TRUST_KEY)
        return None if raw is None else bytes(raw)

    async def _revoke(self, key: str, member: str, score: int, prune_below: int | None) -> None:
        async def work() -> Any:
            prune = "" if prune_below is None else str(prune_below)
            return await self._write_then_wait(REVOKE, [key], [member, score, prune])

        await self._bounded(work, self._settings.write_deadline_ms, "revoke")

    async def revoke_code(self, cti: bytes, expires_at: int, now: int) -> None:
        """Revoke a code id until its expiry; expired entries are pruned on the way."""
        await self._revoke(keyspace.REVOKED_CODES_KEY, cti.hex(), expires_at, now)

    async def revoke_key(self, kid: bytes, now: int) -> None:
        """Revoke a key id for good."""
        await self._revoke(keyspace.REVOKED_KEYS_KEY, b64url_encode(kid), now, None)

    async def revocations(self, now: int) -> Revocations:
        """Both revocation sets, read concurrently (pipelined on the keyring's shard)."""
        fast = await self._hot()
        codes, kids = await asyncio.gather(
            fast.execute(
                keyspace.REVOKED_CODES_KEY, "ZRANGEBYSCORE", keyspace.REVOKED_CODES_KEY, now, "+inf"
            ),
            fast.execute(keyspace.REVOKED_KEYS_KEY, "ZRANGE", keyspace.REVOKED_KEYS_KEY, 0, -1),
        )
        return Revocations(
            codes=frozenset(bytes.fromhex(c.decode()) for c in codes),
            keys=frozenset(b64url_decode(k.decode()) for k in kids),
        )

    async def get_signed_list(self, kind: int) -> tuple[int, bytes | None]:
        """The stored signed list of ``kind`` (1 trust, 2 revocations): its sequence (0 for
        none) and its document, or None."""
        key = keyspace.SIGNED_LIST_KEYS[kind]
        fast = await self._hot()
        seq, document = await fast.execute(key, "HMGET", key, "n", "d")
        return (0 if seq is None else int(seq)), (None if document is None else bytes(document))

    async def put_signed_list(
        self, kind: int, expected_seq: int, seq: int, document: bytes
    ) -> None:
        """Compare-and-set the signed list of ``kind`` from ``expected_seq`` to ``seq``,
        acknowledged after WAIT; VersionConflict (with the stored sequence) if another came
        between."""
        key = keyspace.SIGNED_LIST_KEYS[kind]

        async def work() -> Any:
            return await self._write_then_wait(
                PUT_SIGNED_LIST, [key], [expected_seq, seq, document], wrote=did_write
            )

        code, current = await self._bounded(work, self._settings.write_deadline_ms, "signed_list")
        if code == KeyringCode.STALE:
            raise VersionConflict(int(current))
