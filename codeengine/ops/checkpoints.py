"""Signed audit checkpoints: every subject's chain head, anchored outside the store.

A holder of the audit MAC key (an issuer host) could rewrite a subject's whole chain and its
record consistently. A checkpoint, written by ops and signed with an Ed25519 key that no
service holds, records each subject's head (how many entries, the head entry's MAC); a later
``codeengine audit verify --checkpoint FILE`` checks that every anchored head is still at its
position, so history before the checkpoint cannot be rewritten without it showing.

The file is text, one line per subject, so it diffs and greps:

    codeengine-audit-checkpoint/1 {"at": 1800000000, "subjects": 2}
    <pseudonym> <entries> <head MAC, hex>
    ...
    signature <base64 Ed25519 signature of every byte above this line>

A line is 16 + 1 + the count's digits + 1 + 32 + 1 bytes: about 52 bytes per subject (52 MB
for a million subjects).
"""

from __future__ import annotations

__all__ = [
    "FORMAT",
    "CheckpointError",
    "new_signing_key",
    "public_pem",
    "read_checkpoint",
    "write_checkpoint",
]

import base64
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from codeengine.code.errors import CodeEngineError
from codeengine.keyfiles import write_private

FORMAT = "codeengine-audit-checkpoint/1"


class CheckpointError(CodeEngineError):
    """The checkpoint file is unreadable, or its signature does not hold."""


def new_signing_key() -> bytes:
    """A fresh Ed25519 checkpoint signing key, PEM (PKCS #8, unencrypted: a 0600 file)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint key {path.name}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"checkpoint key {path.name} is not an Ed25519 key")
    return key


def write_checkpoint(
    out: Path, heads: Iterable[tuple[str, int, str]], key_path: Path, at: int
) -> int:
    """Write and sign a checkpoint of ``heads`` (subject, entries, head MAC); how many."""
    key = _private(key_path)
    lines = [f"{subject} {count} {head}\n" for subject, count, head in heads]
    header = f"{FORMAT} {json.dumps({'at': at, 'subjects': len(lines)})}\n"
    body = (header + "".join(lines)).encode()
    signature = base64.b64encode(key.sign(body)).decode()
    write_private(out, body + f"signature {signature}\n".encode())
    return len(lines)


def public_pem(key_path: Path) -> bytes:
    """The public half of the checkpoint key, PEM: all that checking a checkpoint needs."""
    return (
        _private(key_path)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _public(path: Path) -> Ed25519PublicKey:
    """A public key file, or the public half of the private key file."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint key {path.name}") from exc
    if b"PRIVATE KEY" in pem:
        return _private(path).public_key()
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise CheckpointError(f"cannot read checkpoint key {path.name}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"checkpoint key {path.name} is not an Ed25519 key")
    return key


def read_checkpoint(path: Path, key_path: Path) -> Mapping[str, tuple[int, str]]:
    """The anchors of a checkpoint whose signature holds under the key (the public half, or
    the private key it is taken from)."""
    public = _public(key_path)
    try:
        raw = path.read_bytes()
        body, _, last = raw.rstrip(b"\n").rpartition(b"\n")
        body += b"\n"
        tag, _, signature = last.decode().partition(" ")
        if tag != "signature" or not body.startswith(FORMAT.encode() + b" "):
            raise CheckpointError(f"{path.name} is not an audit checkpoint")
        public.verify(base64.b64decode(signature), body)
    except InvalidSignature:
        raise CheckpointError(f"{path.name}: the checkpoint's signature does not hold") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path.name}") from exc
    anchors: dict[str, tuple[int, str]] = {}
    for line in body.decode().splitlines()[1:]:
        subject, count, head = line.split(" ")
        anchors[subject] = (int(count), head)
    return anchors
