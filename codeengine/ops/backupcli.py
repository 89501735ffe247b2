"""``codeengine backup snapshot|restore|check``: the store's backup, by hand or from a timer.

    codeengine backup snapshot --out DIR [--nodes H:P,...] [--user NAME] [--password-file F]
    codeengine backup restore --from DIR [--nodes H:P,...] [--user NAME] [--password-file F]
                              [--replicas N] [--slots RANGES]
    codeengine backup check --from DIR

TLS comes from the settings' ``[cluster]`` (the CA, the client certificate, the server name);
the nodes too unless ``--nodes`` names others (a restore's new cluster). The login is not the
services' user, which may not read or write every key: ``--user`` (default ``admin``) and its
password file (default: ``NAME.password`` beside ``cluster.password_file``). Progress goes to
standard error, the report as JSON to standard output; a refused snapshot exits 2 with one line
that says why.
"""

from __future__ import annotations

__all__ = ["add_backup_commands"]

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from codeengine.ops.backup import (
    Progress,
    backup_client,
    parse_slots,
    restore_snapshot,
    take_snapshot,
)
from codeengine.ops.backupformat import check_snapshot
from codeengine.ops.commands import config_path
from codeengine.settings import Settings, load_settings, parse_nodes
from codeengine.store.cluster import FastCluster
from codeengine.store.security import load_security

T = TypeVar("T")
BAR_WIDTH = 30


class _ProgressLine:
    """A bar on a terminal, a line every 5 s (and the last one) otherwise."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._started = time.monotonic()
        self._last = 0.0
        self._finished = False

    async def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        # A total of 0 is unknown (a restore of some slots): keys only, never a last line.
        last = 0 < progress.total <= progress.done
        if self._finished or (not self._tty and now - self._last < 5 and not last):
            return
        self._last = now
        self._finished = last
        share = progress.done / progress.total if progress.total else 0.0
        rate = progress.keys / max(now - self._started, 1e-6)
        done = f"{share:6.1%}" if progress.total else "  ... "
        text = f"{progress.phase} {done}: {progress.keys:,} keys, {rate:,.0f} keys/s"
        if self._tty:
            filled = int(share * BAR_WIDTH)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}")
            if last:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _client(settings: Settings, args: argparse.Namespace) -> FastCluster:
    cluster = settings.cluster
    password_file = args.password_file or str(
        Path(cluster.password_file).with_name(f"{args.user}.password")
    )
    security = load_security(
        username=args.user,
        password_file=password_file,
        tls=cluster.tls,
        ca_file=cluster.ca_file,
        cert_file=cluster.cert_file,
        key_file=cluster.key_file,
        server_name=cluster.server_name,
    )
    return backup_client(parse_nodes(args.nodes or cluster.nodes), security)


async def _with_cluster(fast: FastCluster, work: Callable[[FastCluster], Awaitable[T]]) -> T:
    try:
        await fast.start()
        return await work(fast)
    finally:
        await fast.aclose()


def _print(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def _cmd_snapshot(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args))
    out = Path(args.out)
    started = time.monotonic()

    async def work(fast: FastCluster) -> Any:
        return await take_snapshot(fast, out, int(time.time()), _ProgressLine())

    manifest = asyncio.run(_with_cluster(_client(settings, args), work))
    _print(
        {
            "snapshot": str(out),
            "keys": manifest.keys,
            "bytes": sum(f.bytes for f in manifest.files),
            "files": len(manifest.files),
            "slots_retried": manifest.slots_retried,
            "redis_version": manifest.redis_version,
            "seconds": round(time.monotonic() - started, 3),
        }
    )
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args))
    folder = Path(args.source)

    slots = parse_slots(args.slots) if args.slots else None

    async def work(fast: FastCluster) -> Any:
        return await restore_snapshot(fast, folder, _ProgressLine(), args.replicas, slots)

    report = asyncio.run(_with_cluster(_client(settings, args), work))
    _print(
        {
            "restored_from": str(folder),
            "slots": args.slots or "all",
            "keys": report.keys,
            "files": report.files,
            "epochs_raised": report.epochs_raised,
            "replicas_acked": report.replicas_acked,
            "seconds": round(report.seconds, 3),
        }
    )
    short = [addr for addr, n in report.replicas_acked.items() if n < args.replicas]
    if short:
        print(
            f"codeengine: restored, but {', '.join(short)} confirmed fewer than "
            f"{args.replicas} replicas: check the replicas before opening the cluster",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    manifest = check_snapshot(Path(args.source))
    _print(
        {
            "snapshot": args.source,
            "created_at": manifest.created_at,
            "keys": manifest.keys,
            "files": [
                {
                    "name": f.name,
                    "primary": f.primary,
                    "slots": ",".join(f"{a}-{b}" for a, b in f.slots),
                    "keys": f.keys,
                    "bytes": f.bytes,
                }
                for f in manifest.files
            ],
            "redis_version": manifest.redis_version,
            "intact": True,
        }
    )
    return 0


def _login_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nodes", metavar="HOST:PORT,...", help="the cluster (default: cluster.nodes)"
    )
    parser.add_argument(
        "--user", default="admin", help="ACL user (default admin; see docs/operations.md)"
    )
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help="the user's password (default: USER.password beside cluster.password_file)",
    )


def add_backup_commands(commands: Any) -> None:
    """Add ``backup`` to the ``codeengine`` command's subcommands."""
    backup = commands.add_parser(
        "backup", help="snapshot the store's cluster to a folder, check one, restore one"
    )
    sub = backup.add_subparsers(dest="backup_command", required=True)
    snapshot = sub.add_parser(
        "snapshot",
        help="copy every key (DUMP, slot by slot) into a new folder with a checksummed manifest",
    )
    snapshot.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
    _login_options(snapshot)
    snapshot.set_defaults(func=_cmd_snapshot)
    restore = sub.add_parser(
        "restore", help="check a snapshot, then write it into a new, empty cluster (RESTORE)"
    )
    restore.add_argument("--from", dest="source", required=True, metavar="DIR")
    restore.add_argument(
        "--replicas", type=int, default=1, help="replicas each primary must confirm (default 1)"
    )
    restore.add_argument(
        "--slots",
        metavar="RANGES",
        help="only these slots (0-5460,10923-16383), each empty in the target: a lost shard "
        "into a cluster whose other shards live on (default: every key, into an empty cluster)",
    )
    _login_options(restore)
    restore.set_defaults(func=_cmd_restore)
    check = sub.add_parser(
        "check", help="check a snapshot's manifest and checksums without a cluster"
    )
    check.add_argument("--from", dest="source", required=True, metavar="DIR")
    check.set_defaults(func=_cmd_check)
