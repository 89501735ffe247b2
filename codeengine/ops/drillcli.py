"""``codeengine drill NAME``: run a failover drill, or the backup-restore drill, and print
where its report is."""

from __future__ import annotations

__all__ = ["add_drill_commands"]

import argparse
from pathlib import Path
from typing import Any

from codeengine.ops.backupdrill import BACKUP_DRILL, BackupDrillOptions, run_backup_drill
from codeengine.ops.drill import DRILLS, DrillOptions, run_drill


def _cmd_backup_drill(args: argparse.Namespace) -> int:
    options = BackupDrillOptions(
        subjects=args.subjects or BackupDrillOptions.subjects,
        changes=args.changes,
        out_dir=Path(args.out),
    )
    print(
        f"drill {BACKUP_DRILL}: {options.subjects} subjects, {options.changes} changes each, "
        "then a snapshot under writes and a restore into a fresh cluster ...",
        flush=True,
    )
    summary, report = run_backup_drill(options)
    return _verdict(summary, report)


def _verdict(summary: dict[str, Any], report: Path) -> int:
    for goal in summary["goals"]:
        mark = "pass" if goal["passed"] else "FAIL"
        print(f"  {mark}  {goal['goal']}: {goal['value']} (goal {goal['target']})")
    verdict = "PASS" if summary["passed"] else "FAIL"
    print(f"{verdict}; report: {report} and {report.with_suffix('.md')}")
    return 0 if summary["passed"] else 1


def _cmd_drill(args: argparse.Namespace) -> int:
    if args.name == BACKUP_DRILL:
        return _cmd_backup_drill(args)
    options = DrillOptions(
        city=args.city,
        duration_s=args.duration,
        fault_at_s=args.fault_at,
        restore_after_s=args.restore_after,
        pause_s=args.pause,
        target=args.target,
        rate=args.rate,
        subjects=args.subjects or DrillOptions.subjects,
        out_dir=Path(args.out),
    )
    print(
        f"drill {args.name}: city {options.city}, {options.duration_s:g} s, fault at "
        f"{options.fault_at_s:g} s, {options.rate:g} req/s ...",
        flush=True,
    )
    summary, report = run_drill(args.name, options)
    return _verdict(summary, report)


def add_drill_commands(commands: Any) -> None:
    """Add ``drill`` to the ``codeengine`` command's subcommands."""
    drill = commands.add_parser(
        "drill",
        help="failover drill under load (kill or pause a part), or the backup-restore drill",
        description="A failover drill starts its own Redis Cluster and the city's primary and "
        "backup issuer and verifier on free loopback ports, runs the mixed load, injects the "
        "fault. backup-restore loads its own cluster, snapshots it under writes, restores it "
        "into a fresh one and checks that nothing acknowledged before the snapshot is lost. "
        "Each writes a JSON and a Markdown report. Exit status 0 when every goal passed.",
    )
    drill.add_argument("name", choices=(*DRILLS, BACKUP_DRILL))
    drill.add_argument("--city", type=int, default=320100, help="city code (configs/cities)")
    drill.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    drill.add_argument("--fault-at", type=float, default=20.0, help="second the fault starts")
    drill.add_argument(
        "--restore-after",
        type=float,
        default=None,
        help="seconds until the part comes back (default: 20; Redis restarts after 2)",
    )
    drill.add_argument("--pause", type=float, default=6.0, help="pause-redis-master: SIGSTOP s")
    drill.add_argument(
        "--target",
        choices=("data", "lease"),
        default="data",
        help="Redis drills: hit a data shard, or the shard holding the city's write lease",
    )
    drill.add_argument("--rate", type=float, default=200.0, help="requests per second")
    drill.add_argument(
        "--subjects",
        type=int,
        default=None,
        help="subjects the load uses (default 120; backup-restore: 2000, its size)",
    )
    drill.add_argument(
        "--changes",
        type=int,
        default=BackupDrillOptions.changes,
        help="backup-restore: status changes per subject before the snapshot (default 2)",
    )
    drill.add_argument("--out", default="var/drills", help="folder for reports")
    drill.set_defaults(func=_cmd_drill)
