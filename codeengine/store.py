"""The store port: what the services need from the place where all state lives.

The services are stateless; this Protocol is the only way they reach state. The adapter for the
real deployment is :class:`codeengine.redisstore.RedisStore` (a sharded Redis Cluster).
"""

from __future__ import annotations

__all__ = ["Store"]

from typing import Protocol

from codeengine.display import DisplayedCode
from codeengine.model import SubjectId
from codeengine.scans import ScanEntry
from codeengine.status import AuditEntry, StatusChange, SubjectRecord, WriteResult
from codeengine.verification import Revocations


class Store(Protocol):
    """Subject records, versioned status writes and the audit trail."""

    async def ping(self) -> None:
        """Return when every shard answers; raise StoreUnavailable otherwise."""

    async def get_subject(self, subject: SubjectId) -> SubjectRecord | None:
        """The subject's record, or None if the subject was never generated."""

    async def create_subject(self, record: SubjectRecord, actor: str) -> tuple[SubjectRecord, bool]:
        """Create the subject unless it exists; return the stored record and whether it is new."""

    async def set_status(self, change: StatusChange) -> WriteResult:
        """Compare-and-set the colour; acknowledged only after a replica has the write.

        Raises VersionConflict when ``change.if_version`` is not current, UnknownSubject when
        the subject does not exist, WriteNotReplicated when no replica
        confirmed in time (resending the same change is then safe).
        """

    async def audit_trail(self, subject: SubjectId, limit: int = 100) -> list[AuditEntry]:
        """The subject's audit entries, oldest first."""

    async def display_state(
        self, subject: SubjectId
    ) -> tuple[SubjectRecord | None, DisplayedCode | None]:
        """The subject's record and current display token, in one round trip."""

    async def replace_display(
        self, subject: SubjectId, seen: DisplayedCode | None, new: DisplayedCode, ttl_ms: int
    ) -> DisplayedCode:
        """Store ``new`` unless the token changed since ``seen``; return the stored token."""

    async def get_keyring(self) -> bytes | None:
        """The sealed keyring, or None before the first one is stored."""

    async def put_keyring(
        self, expected_version: int, sealed: bytes, version: int, trust: bytes
    ) -> None:
        """Store a new keyring version and its trust list; VersionConflict if one came between."""

    async def get_trust(self) -> bytes | None:
        """The public trust list (JWKS JSON) of the stored keyring."""

    async def revoke_code(self, cti: bytes, expires_at: int, now: int) -> None:
        """Revoke one code id until the code expires (acknowledged after a replica has it)."""

    async def revoke_key(self, kid: bytes, now: int) -> None:
        """Revoke a signing key id: every code it signed is refused from now on."""

    async def revocations(self, now: int) -> Revocations:
        """The revoked code ids (unexpired) and key ids."""

    async def append_scans(self, entries: list[ScanEntry], max_len: int) -> list[ScanEntry]:
        """Append scan entries to their cities' logs; return those of cities that failed.

        Cities on healthy shards are written even when another shard is down, exactly once.
        """

    async def read_scans(
        self, city: int, from_ms: int, to_ms: int, limit: int
    ) -> tuple[list[ScanEntry], bool]:
        """A city's scan entries in ``[from_ms, to_ms]``, at most ``limit``; and if cut short."""

    async def close(self) -> None:
        """Release connections."""
