"""The snapshot folder: its manifest, its shard files, and the check that refuses a bad one.

A snapshot is a folder (owner-only, 0700) of owner-only files (0600): it holds every sealed
record, audit stream and key of the store, so it is as sensitive as the cluster itself.

    manifest.json         written last, atomically: format, when, the source's Redis version
                          and slot map, and every shard file with its SHA-256, size, key count
    shard-0.cedump ...    one per source primary: a stream of msgpack records
                          ``[slot, key, expire_at_ms, payload]`` (``expire_at_ms`` 0: no
                          expiry; ``payload``: the key's ``DUMP``)

A folder without its manifest is a snapshot that did not finish. :func:`check_snapshot` reads
the manifest and every file's bytes and refuses, with a :class:`BackupError` naming the file,
anything missing, cut short, changed or left over; a restore runs it before writing anything.
"""

from __future__ import annotations

__all__ = [
    "FORMAT",
    "MANIFEST",
    "BackupError",
    "Manifest",
    "Record",
    "ShardFile",
    "ShardWriter",
    "check_snapshot",
    "make_snapshot_dir",
    "read_records",
    "write_manifest",
]

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from codeengine.code.errors import CodeEngineError

FORMAT = "codeengine-backup/1"
MANIFEST = "manifest.json"
SHARD_SUFFIX = ".cedump"
READ_CHUNK_BYTES = 1 << 20


class BackupError(CodeEngineError):
    """A snapshot that cannot be taken, or may not be restored: partial, corrupt, or a
    target cluster that is not empty. The message says which and what to do."""


Record = tuple[int, bytes, int, bytes]
"""One key: its slot, its name, its absolute expiry (ms since the epoch; 0: none), its DUMP."""


@dataclass(frozen=True, slots=True)
class ShardFile:
    """One source primary's keys, as the manifest lists them."""

    name: str
    primary: str
    """``host:port`` of the primary the keys were read from."""
    slots: tuple[tuple[int, int], ...]
    """The slot ranges that primary served."""
    keys: int
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a finished snapshot holds; the last file written."""

    created_at: int
    """When the snapshot started (s since the epoch)."""
    redis_version: str
    keys: int
    files: tuple[ShardFile, ...]
    slots_retried: int = 0
    """Slots whose keys changed between listing and dumping them, and were read again."""
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        """The manifest as written to ``manifest.json``."""
        return asdict(self)

    @classmethod
    def from_json(cls, document: Any) -> Manifest:
        """A manifest read back; BackupError if it is not one."""
        try:
            if document["format"] != FORMAT:
                raise BackupError(
                    f"{MANIFEST}: format {document['format']!r}, this engine reads {FORMAT!r}"
                )
            files = tuple(
                ShardFile(
                    name=str(f["name"]),
                    primary=str(f["primary"]),
                    slots=tuple((int(a), int(b)) for a, b in f["slots"]),
                    keys=int(f["keys"]),
                    bytes=int(f["bytes"]),
                    sha256=str(f["sha256"]),
                )
                for f in document["files"]
            )
            return cls(
                created_at=int(document["created_at"]),
                redis_version=str(document["redis_version"]),
                keys=int(document["keys"]),
                files=files,
                slots_retried=int(document.get("slots_retried", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"{MANIFEST} is not a snapshot manifest ({exc!r})") from None


def make_snapshot_dir(out: Path) -> None:
    """Create ``out`` owner-only; refuse one that holds anything (an older snapshot)."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: a snapshot goes into a new folder")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out, 0o700)


class ShardWriter:
    """Appends records to one shard file, counting its keys and bytes and hashing it."""

    def __init__(self, folder: Path, index: int, primary: str, slots: tuple[tuple[int, int], ...]):
        self.name = f"shard-{index}{SHARD_SUFFIX}"
        self.primary = primary
        self.slots = slots
        fd = os.open(folder / self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._packer = msgpack.Packer(use_bin_type=True)
        self._hash = hashlib.sha256()
        self.keys = 0
        self.bytes = 0

    def add(self, record: Record) -> None:
        """Write one key."""
        data: bytes = self._packer.pack(list(record))
        self._file.write(data)
        self._hash.update(data)
        self.keys += 1
        self.bytes += len(data)

    def close(self) -> ShardFile:
        """Flush the file to disk; its manifest entry."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return ShardFile(
            self.name, self.primary, self.slots, self.keys, self.bytes, self._hash.hexdigest()
        )


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write the manifest last and atomically: the folder is a snapshot from then on."""
    tmp = folder / (MANIFEST + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest.to_json(), handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / MANIFEST)


def _read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BackupError(f"{folder} is not a folder")
    if not path.exists():
        raise BackupError(
            f"{folder} has no {MANIFEST}: the snapshot did not finish (partial); take a new one"
        )
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{MANIFEST} cannot be read ({type(exc).__name__}): corrupt") from None
    return Manifest.from_json(document)


def _digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def check_snapshot(folder: Path) -> Manifest:
    """The manifest of a whole, unchanged snapshot; BackupError naming what is wrong.

    Every file the manifest lists must be there with its size and SHA-256, every slot must be
    in exactly one file, and no other shard file may lie beside them.
    """
    manifest = _read_manifest(folder)
    listed = {f.name for f in manifest.files}
    extra = sorted(p.name for p in folder.glob(f"*{SHARD_SUFFIX}") if p.name not in listed)
    if extra:
        raise BackupError(f"{', '.join(extra)} not in {MANIFEST}: not this snapshot's files")
    covered = sorted(r for f in manifest.files for r in f.slots)
    expected = 0
    for first, last in covered:
        if first != expected:
            raise BackupError(f"{MANIFEST} does not cover slot {expected}: corrupt")
        expected = last + 1
    if expected != 16384:
        raise BackupError(f"{MANIFEST} does not cover slot {expected}: corrupt")
    if sum(f.keys for f in manifest.files) != manifest.keys:
        raise BackupError(f"{MANIFEST}: the files' key counts do not add up: corrupt")
    for shard in manifest.files:
        path = folder / shard.name
        if not path.is_file():
            raise BackupError(f"{shard.name} is missing: partial snapshot")
        size, digest = _digest(path)
        if size != shard.bytes:
            raise BackupError(
                f"{shard.name} has {size} bytes, the manifest says {shard.bytes}: "
                "cut short or changed"
            )
        if digest != shard.sha256:
            raise BackupError(f"{shard.name}: SHA-256 differs from the manifest's: corrupt")
    return manifest


def read_records(folder: Path, shard: ShardFile) -> Iterator[Record]:
    """The records of one shard file, its checksum and count checked again as it is read.

    A file that changed since :func:`check_snapshot` raises BackupError at its end, after its
    records were handed out: the caller must treat what it wrote as unfinished.
    """
    digest = hashlib.sha256()
    count = 0
    unpacker = msgpack.Unpacker(raw=False, use_list=False, max_buffer_size=1 << 30)
    with (folder / shard.name).open("rb") as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            digest.update(chunk)
            unpacker.feed(chunk)
            try:
                items = list(unpacker)
                records = [(int(s), bytes(k), int(e), bytes(p)) for s, k, e, p in items]
            except (ValueError, TypeError, msgpack.UnpackException):
                raise BackupError(
                    f"{shard.name} holds something that is no record: corrupt"
                ) from None
            count += len(records)
            yield from records
    if digest.hexdigest() != shard.sha256 or count != shard.keys:
        raise BackupError(f"{shard.name} changed while it was restored: corrupt")
