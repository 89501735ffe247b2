"""Every Redis key the engine uses, in one place.

Each key about a subject carries the subject's pseudonym as its hash tag (``{...}``), so that
everything about one subject lives in one cluster slot and is read or written in one round trip.
"""

from __future__ import annotations

__all__ = [
    "KEYRING_KEY",
    "KEYRING_VERSION_KEY",
    "RECENT_BATCHES_KEY",
    "RECORDS_STATUS_KEY",
    "REVOKED_CODES_KEY",
    "REVOKED_KEYS_KEY",
    "SIGNED_LIST_KEYS",
    "TRUST_KEY",
    "audit_key",
    "change_batch_key",
    "change_log_key",
    "fence_keys",
    "offline_scan_key",
    "op_key",
    "scan_log_key",
    "subject_key",
    "subject_keys",
    "token_key",
]

from codeengine.code.model import CodeKind, SubjectId

NAMESPACE = "ce"

KEYRING_KEY = f"{NAMESPACE}:k:{{keyring}}"
"""The sealed signing keyring (msgpack: version, nonce, ciphertext)."""
TRUST_KEY = f"{NAMESPACE}:k:{{keyring}}:jwks"
"""The public trust list (JWKS JSON) derived from the keyring; same slot, written together."""
KEYRING_VERSION_KEY = f"{NAMESPACE}:k:{{keyring}}:v"
"""The stored keyring's version, for compare-and-set by rotations."""
REVOKED_CODES_KEY = f"{NAMESPACE}:k:{{keyring}}:rc"
"""Revoked code ids (sorted set: cti hex, scored by the code's expiry; pruned after it)."""
REVOKED_KEYS_KEY = f"{NAMESPACE}:k:{{keyring}}:rk"
"""Revoked key ids (sorted set: kid base64url, scored by the time of revocation)."""
SIGNED_LIST_KEYS = {1: f"{NAMESPACE}:k:{{keyring}}:st", 2: f"{NAMESPACE}:k:{{keyring}}:sr"}
"""The signed lists by kind (``codeengine.code.signedlist.ListKind``: 1 the trust list, 2 the
revocation list): hashes of the sequence (``n``) and the COSE_Sign1 document (``d``)."""


def scan_log_key(city: int) -> str:
    """A city's scan log (stream); one per city spreads the log over the shards."""
    return f"{NAMESPACE}:scan:{{{city}}}"


def offline_scan_key(client: str, scan_id: str) -> str:
    """Marks an offline scan's id as logged by ``client`` (the API client that sent it), so
    that the terminal sending it again is not logged twice; expires when the scan would be
    refused as too old anyway. Scoped by the client, so that one key holder cannot claim
    another's ids ahead of it; the hash tag is the id alone, which spreads the claims."""
    return f"{NAMESPACE}:os:{{{scan_id}}}:{client}"


def scan_batch_key(city: int, token: str) -> str:
    """The marker that a scan-log batch was written to a city's stream (expires in an hour)."""
    return f"{NAMESPACE}:scan:{{{city}}}:b:{token}"


def change_log_key(city: int) -> str:
    """A city's change log (stream): every audited write of its subjects, for the records
    service (codeengine.code.changes); a subject's audit stream cannot be read by a group."""
    return f"{NAMESPACE}:chg:{{{city}}}"


def change_batch_key(city: int, token: str) -> str:
    """The marker that a change-log batch was written to a city's stream (expires in an hour)."""
    return f"{NAMESPACE}:chg:{{{city}}}:b:{token}"


def subject_key(subject: SubjectId) -> str:
    """The subject's record: kind, city, colour, status version (msgpack)."""
    return f"{NAMESPACE}:s:{{{subject}}}"


def op_key(subject: SubjectId, op_id: str) -> str:
    """The marker of one applied status write, so that a resend is a no-op (expires in 24 h).

    One key per operation, each with its own expiry: a subject converted every day never
    accumulates markers.
    """
    return f"{NAMESPACE}:o:{{{subject}}}:{op_id}"


def audit_key(subject: SubjectId) -> str:
    """The subject's append-only audit trail (stream)."""
    return f"{NAMESPACE}:a:{{{subject}}}"


def token_key(subject: SubjectId, kind: int | None = None) -> str:
    """The subject's current display token of a kind (display and online verify).

    A subject's own kind (health for a person, the enterprise service code for an enterprise)
    has the plain key; a person's service code and fused code (卡码融合) have their own.
    """
    if kind is None or kind in _OWN_KINDS:
        return f"{NAMESPACE}:t:{{{subject}}}"
    return f"{NAMESPACE}:t:{{{subject}}}:{kind}"


_OWN_KINDS = frozenset({int(CodeKind.HEALTH), int(CodeKind.ENTERPRISE_SERVICE)})
"""The kinds a subject is generated with."""


def subject_keys(subject: SubjectId, op_id: str) -> tuple[str, str, str]:
    """The keys a status write touches, in the order the scripts expect them."""
    return subject_key(subject), op_key(subject, op_id), audit_key(subject)


def batch_key(batch_id: str) -> str:
    """A bulk conversion batch: its state and counters (hash)."""
    return f"{NAMESPACE}:b:{{{batch_id}}}"


RECORDS_STATUS_KEY = f"{NAMESPACE}:rec:{{status}}"
"""The records service's status for the ops console (hash, codeengine.code.recordstatus):
written by the records service's own user (it may write ``ce:rec:*`` only), read by the issuer."""
RECENT_BATCHES_KEY = f"{NAMESPACE}:b:{{recent}}"
"""The ids of the latest batches (sorted set, scored by their start), for the ops console."""


def batch_subjects_key(batch_id: str) -> str:
    """The subjects a batch changed (set of pseudonyms), for its rollback."""
    return f"{NAMESPACE}:b:{{{batch_id}}}:s"


def batch_errors_key(batch_id: str) -> str:
    """A batch's refused rows: line number and reason code, never the row (list)."""
    return f"{NAMESPACE}:b:{{{batch_id}}}:e"


def batch_snapshot_key(subject: SubjectId, batch_id: str) -> str:
    """What one subject's risk periods were before a batch changed them, for its rollback."""
    return f"{NAMESPACE}:bs:{{{subject}}}:{batch_id}"


def appeal_key(appeal_id: str) -> str:
    """An appeal (异议): subject, reason, evidence reference, decision (hash)."""
    return f"{NAMESPACE}:ap:{{{appeal_id}}}"


def appeal_marker_key(subject: SubjectId, appeal_id: str) -> str:
    """The marker of an applied appeal decision, so that a resend is a no-op."""
    return f"{NAMESPACE}:o:{{{subject}}}:appeal:{appeal_id}"


def alias_key(alias: str) -> str:
    """An alias credential's keyed hash: the pseudonym of the subject it stands for."""
    return f"{NAMESPACE}:al:{{{alias}}}"


def subject_aliases_key(subject: SubjectId) -> str:
    """The aliases bound to a subject: alias hash to "type:masked value" (hash)."""
    return f"{NAMESPACE}:sa:{{{subject}}}"


def licences_key(subject: SubjectId) -> str:
    """Electronic licences linked to a subject: keyed hash to "type:masked number" (hash)."""
    return f"{NAMESPACE}:lic:{{{subject}}}"


def fence_keys(city: int) -> tuple[str, str, str, str, str, str]:
    """A city's write lease (codeengine.store.fence): lease, epoch counter, switch log, primary
    heartbeat, planned hold, backup heartbeat; one hash tag, so one script reads and writes
    them together."""
    base = f"{NAMESPACE}:f:{{{city}}}"
    return base, f"{base}:e", f"{base}:log", f"{base}:up", f"{base}:hold", f"{base}:upb"
