"""The ``codeengine`` command: serve a service in production, run the dev system, manage dev
keys, start a cluster by hand, and the ops commands."""

from __future__ import annotations

__all__ = ["main"]

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from codeengine import __version__
from codeengine.code.errors import CodeEngineError
from codeengine.ops.anchorcli import add_anchor_commands
from codeengine.ops.backupcli import add_backup_commands
from codeengine.ops.commands import add_ops_commands, config_path
from codeengine.ops.devcluster import ClusterError, DevCluster
from codeengine.ops.devsecrets import ensure_dev_material
from codeengine.ops.keyscli import add_keys_commands
from codeengine.ops.recordscli import add_records_commands
from codeengine.settings import SettingsError, load_settings
from codeengine.web.runtime import require_profile

DEFAULT_CLUSTER_PORT = 7000
DEFAULT_DEADLINE_S = 5.0


def _cmd_run(args: argparse.Namespace) -> int:
    from codeengine.ops.supervisor import run_system

    config = config_path(args)
    settings = load_settings(config)
    cities = _cities(args.cities, settings.codes.cities_path())
    return run_system(settings, Path(args.var), args.cluster_port, config, cities)


def _cities(text: str, directory: Path) -> list[int]:
    """``--cities``: "" (none), "all", or city codes separated by commas."""
    from codeengine.code.cities import load_cities

    if not text:
        return []
    table = load_cities(directory)
    if text == "all":
        return sorted(table)
    codes = []
    for part in text.split(","):
        if not part.strip().isdigit() or int(part) not in table:
            raise SettingsError(f"--cities: {part!r} is not a city code of the city table")
        codes.append(int(part))
    return codes


def _cmd_serve(args: argparse.Namespace) -> int:
    from codeengine.ops.serve import serve_command

    if args.service is None and not args.check:
        print(
            "codeengine serve: name the service (issuer, verifier or records), or --check",
            file=sys.stderr,
        )
        return 2
    if not args.deadline > 0:
        print("codeengine serve: --deadline: a number of seconds above 0", file=sys.stderr)
        return 2
    log_dir = Path(args.log_dir) if args.log_dir else None
    return serve_command(
        args.service, config_path(args), check=args.check, deadline_s=args.deadline, log_dir=log_dir
    )


def _cmd_keys_init(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args))
    profile = require_profile(settings)
    credentials = ensure_dev_material(settings)
    # Files made before keep their keys: a keyring made in the other profile still seeds a store.
    signs = profile.suite.jose_alg
    print(f"profile: {profile.name.value} (new keyrings and anchors sign with {signs})")
    print(f"keyring: {settings.keys.keyring_file}")
    print(f"pepper: {settings.keys.pepper_file}")
    print(f"alias key: {settings.keys.alias_key_file}")
    print(f"MAC keysets: {settings.keys.record_mac_file}, {settings.keys.audit_mac_file}")
    print(f"checkpoint key: {settings.keys.checkpoint_key_file}")
    print(f"trust anchor: {settings.keys.trust_anchor_file}")
    print(f"credentials: {credentials}")
    return 0


def _cmd_cluster(args: argparse.Namespace) -> int:
    cluster = DevCluster(
        Path(args.dir), args.port, persistent=args.persistent, secure=not args.plain
    )
    cluster.start()
    print(f"cluster ready: {cluster.nodes_spec} (Ctrl-C stops it)", flush=True)
    stop = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stop:
            time.sleep(0.2)
    finally:
        cluster.stop()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codeengine", description=__doc__)
    parser.add_argument("--config", help="settings TOML (default: $CODEENGINE_CONFIG)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="run one service's workers against the configured cluster and keys"
    )
    serve.add_argument("service", nargs="?", choices=("issuer", "verifier", "records"))
    serve.add_argument(
        "--check",
        action="store_true",
        help="check the settings, the secret files and the cluster, then exit: 0 good, 1 not "
        "(without a service: both services' files)",
    )
    serve.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE_S,
        metavar="SECONDS",
        help=f"how long the cluster has to answer the check (default {DEFAULT_DEADLINE_S:g})",
    )
    serve.add_argument(
        "--config",
        # Suppressed: given here or before the subcommand, one value; absent here, the other.
        default=argparse.SUPPRESS,
        help="settings TOML (default: $CODEENGINE_CONFIG); may also come before 'serve'",
    )
    serve.add_argument(
        "--log-dir",
        metavar="DIR",
        help="each process writes and rotates its own log file there (default: standard error)",
    )
    serve.set_defaults(func=_cmd_serve)

    run = commands.add_parser("run", help="start cluster, dev keys, issuer and verifier")
    run.add_argument("--var", default="var", help="folder for cluster data and logs")
    run.add_argument("--cluster-port", type=int, default=DEFAULT_CLUSTER_PORT)
    run.add_argument(
        "--cities",
        default="",
        help="also start these cities' primary and backup endpoints on the city table's "
        "ports: 'all' or codes like 320100,320200 (default: none)",
    )
    run.set_defaults(func=_cmd_run)

    keys = commands.add_parser("keys", help="dev key material")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    init = keys_commands.add_parser("init", help="create missing dev keys, pepper, credentials")
    init.set_defaults(func=_cmd_keys_init)
    add_keys_commands(keys_commands)
    add_anchor_commands(keys_commands)

    cluster = commands.add_parser("cluster", help="run a local Redis Cluster in the foreground")
    cluster.add_argument("--dir", default="var/cluster")
    cluster.add_argument("--port", type=int, default=DEFAULT_CLUSTER_PORT)
    cluster.add_argument("--persistent", action="store_true")
    cluster.add_argument(
        "--plain", action="store_true", help="no TLS and no ACL users (benchmark comparisons)"
    )
    cluster.set_defaults(func=_cmd_cluster)

    add_ops_commands(commands)
    add_backup_commands(commands)
    add_records_commands(commands)
    # Imported here: the drills pull in the failover package, which the services never need.
    from codeengine.ops.drillcli import add_drill_commands

    add_drill_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the command; errors print one line and exit non-zero."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SettingsError, ClusterError, CodeEngineError) as exc:
        print(f"codeengine: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
