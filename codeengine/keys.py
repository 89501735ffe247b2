"""Every Redis key the engine uses, in one place.

Each key about a subject carries the subject's pseudonym as its hash tag (``{...}``), so that
everything about one subject lives in one cluster slot and is read or written in one round trip.
"""

from __future__ import annotations

__all__ = ["audit_key", "ops_key", "subject_key", "subject_keys", "token_key"]

from codeengine.model import SubjectId

NAMESPACE = "ce"


def subject_key(subject: SubjectId) -> str:
    """The subject's record: kind, city, colour, status version (msgpack)."""
    return f"{NAMESPACE}:s:{{{subject}}}"


def ops_key(subject: SubjectId) -> str:
    """Operation ids of recent status writes, so that a resent write is a no-op (hash, 24 h)."""
    return f"{NAMESPACE}:o:{{{subject}}}"


def audit_key(subject: SubjectId) -> str:
    """The subject's append-only audit trail (stream)."""
    return f"{NAMESPACE}:a:{{{subject}}}"


def token_key(subject: SubjectId) -> str:
    """The subject's current display token (display and online verify)."""
    return f"{NAMESPACE}:t:{{{subject}}}"


def subject_keys(subject: SubjectId) -> tuple[str, str, str]:
    """The keys a status write touches, in the order the scripts expect them."""
    return subject_key(subject), ops_key(subject), audit_key(subject)
