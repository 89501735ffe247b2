"""``codeengine drill NAME``: run a failover drill, or the backup-restore drill, and print
where its report is."""

from __future__ import annotations

__all__ = ["add_drill_commands"]

import argparse
from pathlib import Path
from typing import Any

from codeengine.ops.backupdrill import BACKUP_DRILL, BackupDrillOptions, run_backup_drill
from codeengine.ops.drill import DRILLS, DrillOptions, run_drill
from codeengine.ops.rotationdrill import ROTATE_DRILL, RotationDrillOptions, run_rotation_drill


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


def _cmd_rotation_drill(args: argparse.Namespace) -> int:
    options = RotationDrillOptions(
        to=args.to,
        back=args.back,
        city=args.city,
        rate=args.rate,
        subjects=args.subjects or RotationDrillOptions.subjects,
        terminals=args.terminals,
        display_ttl_s=args.display_ttl,
        trust_list_max_age_s=args.list_max_age,
        activate_in_s=args.activate_in,
        out_dir=Path(args.out),
    )
    print(
        f"drill {ROTATE_DRILL}: staged rotation to {options.to}"
        f"{' and back' if options.back else ''}, city {options.city}, {options.rate:g} req/s, "
        f"{options.terminals} terminals fetching every {options.trust_list_max_age_s} s ...",
        flush=True,
    )
    summary, report = run_rotation_drill(options)
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
    if args.name == ROTATE_DRILL:
        return _cmd_rotation_drill(args)
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
        help="failover drill under load (kill or pause a part), the backup-restore drill, or "
        "the signing-suite rotation drill",
        description="A failover drill starts its own Redis Cluster and the city's primary and "
        "backup issuer and verifier on free loopback ports, runs the mixed load, injects the "
        "fault. backup-restore loads its own cluster, snapshots it under writes, restores it "
        "into a fresh one and checks that nothing acknowledged before the snapshot is lost. "
        "rotate-suite rotates the signing key to another suite (staged, as published) under "
        "load, with offline terminals fetching the signed lists on the published schedule, and "
        "counts the valid codes refused. "
        "Each writes a JSON and a Markdown report. Exit status 0 when every goal passed.",
    )
    drill.add_argument("name", choices=(*DRILLS, BACKUP_DRILL, ROTATE_DRILL))
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
        help="subjects the load uses (default 120; backup-restore: 2000, its size; "
        "rotate-suite: 200)",
    )
    drill.add_argument(
        "--changes",
        type=int,
        default=BackupDrillOptions.changes,
        help="backup-restore: status changes per subject before the snapshot (default 2)",
    )
    drill.add_argument(
        "--to",
        choices=("SM2SM3", "ES256"),
        default=RotationDrillOptions.to,
        help="rotate-suite: the suite to rotate to from Ed25519 (default SM2SM3)",
    )
    drill.add_argument(
        "--back",
        action="store_true",
        help="rotate-suite: rotate back to Ed25519 once the new key signs",
    )
    drill.add_argument(
        "--terminals",
        type=int,
        default=RotationDrillOptions.terminals,
        help="rotate-suite: terminals on the refresh schedule, phases spread (default 4)",
    )
    drill.add_argument(
        "--display-ttl",
        type=int,
        default=RotationDrillOptions.display_ttl_s,
        help="rotate-suite: codes.display_ttl_s of the drill's services (default 120)",
    )
    drill.add_argument(
        "--list-max-age",
        type=int,
        default=RotationDrillOptions.trust_list_max_age_s,
        help="rotate-suite: codes.trust_list_max_age_s, the terminals' refresh period and the "
        "rotation's default delay (default 300)",
    )
    drill.add_argument(
        "--activate-in",
        type=int,
        default=None,
        help="rotate-suite: the rotation's activate_in_s (default: the service's, staged; "
        "0 rehearses an emergency rotation)",
    )
    drill.add_argument("--out", default="var/drills", help="folder for reports")
    drill.set_defaults(func=_cmd_drill)
