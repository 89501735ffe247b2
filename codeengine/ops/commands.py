"""Operations commands run against the store directly: bulk conversion and the audit check.

    codeengine convert import FILE --batch-id ID [--dry-run] [--format csv|ndjson]
    codeengine convert show ID
    codeengine convert rollback ID
    codeengine audit verify [--subject=PSEUDONYM] [--checkpoint FILE]
    codeengine audit checkpoint --out FILE
    codeengine audit rotate-mac records|audit

They read the same settings as the services (``configs/engine.toml``, ``CODEENGINE_*``): the
cluster's nodes, the pepper (imports derive pseudonyms), the MAC keysets (records and audit
entries are sealed by whoever writes them), the checkpoint key and the rules file. Reports go to
standard output as JSON; progress goes to standard error, as a bar on a terminal.
"""

from __future__ import annotations

__all__ = ["add_ops_commands"]

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from codeengine.code.rules import load_rules
from codeengine.keyfiles import add_mac_key, load_mac_keyset, load_pepper
from codeengine.ops.checkpoints import read_checkpoint, write_checkpoint
from codeengine.settings import ENV_PREFIX, Settings, load_settings
from codeengine.store.adapters._sealed import StoreKeys
from codeengine.store.audit import check_subject, verify_store
from codeengine.store.batches import BatchReport, Format, Importer
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import check_store_profile, require_profile, store_settings
from codeengine.web.worker import tune_gc
from issuer.changelog import ChangeLogWriter

BAR_WIDTH = 30


DEFAULT_CONFIG = Path("configs/engine.toml")


def config_path(args: argparse.Namespace) -> Path | None:
    """``--config``, else ``$CODEENGINE_CONFIG``, else ``configs/engine.toml`` if present."""
    path = args.config or os.environ.get(f"{ENV_PREFIX}CONFIG")
    if path:
        return Path(path)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


class _Progress:
    """Progress on standard error: a bar on a terminal, a line every 5 s otherwise."""

    def __init__(self, total_bytes: int) -> None:
        self._total = max(total_bytes, 1)
        self._tty = sys.stderr.isatty()
        self._started = time.monotonic()
        self._last = 0.0

    def __call__(self, report: BatchReport, read: int) -> None:
        now = time.monotonic()
        if not self._tty and now - self._last < 5:
            return
        self._last = now
        share = min(read / self._total, 1.0)
        rate = report.rows / max(now - self._started, 1e-6)
        text = (
            f"{share:6.1%} {report.rows:,} rows ({report.bad:,} bad, {report.applied:,} "
            f"applied) {rate:,.0f} rows/s"
        )
        if self._tty:
            filled = int(share * BAR_WIDTH)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}")
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self._tty:
            sys.stderr.write("\n")


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


def _format(path: Path, given: str | None) -> Format:
    if given in ("csv", "ndjson"):
        return given  # type: ignore[return-value]
    return "ndjson" if path.suffix.lower() in (".ndjson", ".jsonl") else "csv"


def _print(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


OPS_READ_DEADLINE_MS = 5000
"""A command run by hand may wait for the cluster longer than a request does."""


async def _with_store(settings: Settings, work: Any, *, changes: bool = False) -> Any:
    """Run ``work`` with a store; ``changes``: keep the change log of the subjects it writes
    (flushed before the store closes), as an issuer does."""
    tuned = store_settings(settings)
    tuned = replace(tuned, read_deadline_ms=max(tuned.read_deadline_ms, OPS_READ_DEADLINE_MS))
    profile = require_profile(settings)
    store = RedisStore(tuned)
    store.keys = store_keys(settings)
    store.service = "ops"
    writer = ChangeLogWriter(store, settings.changes) if changes else None
    if writer is not None:
        store.changes = writer.add_packed
        writer.start()
    try:
        # A command keys and checks as the store's profile does, or does nothing.
        await check_store_profile(store, profile)
        return await work(store)
    finally:
        if writer is not None:
            await writer.stop()
        await store.close()


def store_keys(settings: Settings) -> StoreKeys:
    """The MAC keys ops commands write and check with: records and the audit chain."""
    mac = settings.crypto.selected().mac
    return StoreKeys(
        load_mac_keyset(Path(settings.keys.record_mac_file), mac),
        load_mac_keyset(Path(settings.keys.audit_mac_file), mac),
    )


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config_path(args))


def _cmd_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = Path(args.file)
    if not path.is_file():
        print(f"codeengine: no such file: {path}", file=sys.stderr)
        return 2
    rules = load_rules(settings.codes.rules_path())
    pepper = load_pepper(Path(settings.keys.pepper_file))
    progress = _Progress(path.stat().st_size)

    async def work(store: RedisStore) -> BatchReport:
        importer = Importer(
            store,
            rules,
            pepper,
            mac=settings.crypto.selected().mac,
            batch_id=args.batch_id,
            actor=f"batch:{args.batch_id}",
            dry_run=args.dry_run,
            progress=progress,
        )
        return await importer.run(_lines(path), _format(path, args.format))

    # The import keeps up to 300,000 subjects' state in memory: with Python's young threshold
    # the collector would keep walking it, as it walks a worker's in-flight requests.
    tune_gc(settings.service.gc_young_threshold)
    report = asyncio.run(_with_store(settings, work, changes=not args.dry_run))
    progress.done()
    document = report.to_json(with_errors=True)
    _print(document)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(store: RedisStore) -> dict[str, Any]:
        meta, errors = await store.batch_info(args.batch_id, args.errors)
        answer = BatchReport.from_meta(args.batch_id, meta, errors).to_json()
        answer["updated_at"] = int(meta.get("updated_at", 0))
        return answer

    _print(asyncio.run(_with_store(settings, work)))
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    settings = _settings(args)
    actor = f"{os.environ.get('USER', 'ops')}:rollback:{args.batch_id}"

    async def work(store: RedisStore) -> dict[str, int]:
        return await store.rollback_batch(args.batch_id, int(time.time()), actor)

    counts = asyncio.run(_with_store(settings, work, changes=True))
    _print({"batch_id": args.batch_id, "state": "rolled_back", **counts})
    return 0


def _progress(checked: int, broken: int) -> None:
    sys.stderr.write(f"\r{checked:,} subjects checked, {broken:,} broken")
    sys.stderr.flush()


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    audit_keys = store_keys(settings).audit
    assert audit_keys is not None
    anchors = None
    if args.checkpoint:
        key = Path(args.public_key or settings.keys.checkpoint_key_file)
        anchors = read_checkpoint(Path(args.checkpoint), key)

    async def work(store: RedisStore) -> tuple[int, list[Any]]:
        if args.subject:
            result = await check_subject(store, audit_keys, args.subject, anchors)
            return 1, [] if result.ok else [result]
        progress = _progress if sys.stderr.isatty() else None
        return await verify_store(store, audit_keys, progress, anchors)

    checked, broken = asyncio.run(_with_store(settings, work))
    _print(
        {
            "checked": checked,
            "checkpoint": args.checkpoint,
            "broken": [
                {"subject": b.subject, "entries": b.entries, "broken_at": b.broken_at,
                 "problem": b.problem}
                for b in broken
            ],
        }
    )  # fmt: skip
    return 1 if broken else 0


def _cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    settings = _settings(args)
    audit_keys = store_keys(settings).audit
    assert audit_keys is not None

    async def work(store: RedisStore) -> tuple[list[tuple[str, int, str]], list[Any]]:
        # Only chains that check are anchored: a broken one is reported, never vouched for.
        heads: dict[str, tuple[str, int, str]] = {}
        broken = []
        async for subject in store.audited_subjects():
            if subject in heads:
                continue
            result = await check_subject(store, audit_keys, subject)
            if not result.ok:
                broken.append(result)
                continue
            record = await store.get_subject(subject)
            if record is not None:
                heads[subject] = (subject, record.entries, record.head)
            if len(heads) % 1000 == 0:
                sys.stderr.write(f"\r{len(heads):,} heads read, {len(broken):,} broken")
                sys.stderr.flush()
        return sorted(heads.values()), broken

    heads, broken = asyncio.run(_with_store(settings, work))
    out = Path(args.out)
    count = write_checkpoint(out, heads, Path(settings.keys.checkpoint_key_file), int(time.time()))
    sys.stderr.write("\n")
    _print(
        {
            "checkpoint": str(out),
            "anchored": count,
            "bytes": out.stat().st_size,
            "broken": [{"subject": b.subject, "problem": b.problem} for b in broken],
        }
    )
    return 1 if broken else 0


def _cmd_rotate_mac(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = Path(
        settings.keys.record_mac_file if args.which == "records" else settings.keys.audit_mac_file
    )
    keys = add_mac_key(path, os.urandom)
    _print({"file": str(path), "current": keys.current.hex(), "kids": len(keys.keys)})
    return 0


def add_ops_commands(commands: Any) -> None:
    """Add ``convert`` and ``audit`` to the ``codeengine`` command."""
    convert = commands.add_parser("convert", help="bulk conversion from the topic library")
    sub = convert.add_subparsers(dest="convert_command", required=True)
    imp = sub.add_parser("import", help="import a CSV or NDJSON batch of risk records")
    imp.add_argument("file")
    imp.add_argument("--batch-id", required=True, help="the same id never imports twice")
    imp.add_argument("--format", choices=("csv", "ndjson"), help="default: by file suffix")
    imp.add_argument("--dry-run", action="store_true", help="report what would change")
    imp.set_defaults(func=_cmd_import)
    show = sub.add_parser("show", help="a batch's state, counts and refused rows")
    show.add_argument("batch_id")
    show.add_argument("--errors", type=int, default=100, help="refused rows to list")
    show.set_defaults(func=_cmd_show)
    rollback = sub.add_parser("rollback", help="restore what a batch changed")
    rollback.add_argument("batch_id")
    rollback.set_defaults(func=_cmd_rollback)

    audit = commands.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check every subject's keyed audit chain")
    verify.add_argument(
        "--subject",
        metavar="PSEUDONYM",
        # A pseudonym is base64url: one in 64 starts with '-', which argparse would read as an
        # option after a space. The '=' form takes any value.
        help="check one subject only; write --subject=PSEUDONYM (a pseudonym may start with '-')",
    )
    verify.add_argument(
        "--checkpoint", metavar="FILE", help="also check every head anchored in this checkpoint"
    )
    verify.add_argument(
        "--public-key",
        metavar="PEM",
        help="the checkpoint key's public half (default: taken from keys.checkpoint_key_file)",
    )
    verify.set_defaults(func=_cmd_audit_verify)
    checkpoint = audit_sub.add_parser(
        "checkpoint", help="write a signed checkpoint of every subject's chain head"
    )
    checkpoint.add_argument("--out", required=True, metavar="FILE")
    checkpoint.set_defaults(func=_cmd_audit_checkpoint)
    rotate = audit_sub.add_parser(
        "rotate-mac", help="add a new current key to the records' or the audit MAC keyset"
    )
    rotate.add_argument("which", choices=("records", "audit"))
    rotate.set_defaults(func=_cmd_rotate_mac)
