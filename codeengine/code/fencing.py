"""The per-city write fence's values: roles, leases, switches and the token a write carries.

Pure values shared by the store (which keeps the lease), the failover client (which knows a
city's two roles) and the settings. The keeper that holds a lease is ``codeengine.store.fence``.
"""

from __future__ import annotations

__all__ = [
    "NO_FENCE",
    "NO_FENCE_TOKEN",
    "FenceSettings",
    "Lease",
    "Role",
    "Switch",
    "WriteFence",
    "WriterToken",
    "role_of",
]

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol


class Role(StrEnum):
    PRIMARY = "primary"
    BACKUP = "backup"

    @property
    def other(self) -> Role:
        return Role.BACKUP if self is Role.PRIMARY else Role.PRIMARY


@dataclass(frozen=True, slots=True)
class FenceSettings:
    lease_ms: int = 1500
    renew_ms: int = 300
    handback_ms: int = 3000
    write_wait_ms: int = 1500
    """A write that reaches an endpoint without the lease waits this long for it (a backup
    taking over), then is refused with 503 NOT_WRITER naming the holder."""

    def __post_init__(self) -> None:
        if not 0 < self.renew_ms * 3 <= self.lease_ms:
            raise ValueError("fence: the lease must last at least three beats")


class Lease(NamedTuple):
    """A city's lease as the store holds it."""

    owner: Role | None
    epoch: int
    ttl_ms: int
    held_for: Role | None
    """The role a planned handover holds the lease for, if any."""


class Switch(NamedTuple):
    """One change of holder, from the city's switch log."""

    at: float
    source: Role | None
    to: Role
    epoch: int
    why: str


class WriterToken(NamedTuple):
    """What a fenced write carries: the city (as text), the epoch and the writer's name."""

    city: str
    epoch: int
    writer: str


NO_FENCE_TOKEN = WriterToken("", 0, "")


class WriteFence(Protocol):
    """What the store asks before a status write."""

    async def writer(self) -> WriterToken:
        """The token to write with; raises NotWriter if this endpoint may not write now."""
        ...


class _NoFence:
    """A deployment without per-city endpoints: one writer, nothing to fence."""

    async def writer(self) -> WriterToken:
        return NO_FENCE_TOKEN


NO_FENCE: WriteFence = _NoFence()


def role_of(value: str | bytes) -> Role | None:
    text = value.decode() if isinstance(value, bytes) else value
    return Role(text) if text in (Role.PRIMARY, Role.BACKUP) else None
