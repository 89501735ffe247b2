"""The secrets of the evaluation stack (``deploy/compose``), each consumer's share apart.

    python -m codeengine.ops.evalkit --out DIR [--mount /run/secrets/codeengine]

The compose file's init job runs this once before anything else starts, with the same settings
file the services read (``$CODEENGINE_CONFIG``). It makes, or keeps if they are there:

* ``DIR/ops/``: everything, the cluster's CA key and the admin password and the audit
  checkpoint key included; no service mounts it;
* ``DIR/issuer/``, ``DIR/verifier/`` and ``DIR/records/``: the files each service reads
  (:data:`SERVICE_FILES`), each at the path its setting names below ``--mount``, where the
  service mounts the folder. The records service logs in as its own ACL user
  (:data:`RECORDS_USER`), so its cluster password is that user's, in a file of that name
  beside the services' (:func:`service_settings`: compose gives it those two settings);
* ``DIR/redis/``: what the nodes read: their certificate and key, the CA, the ACL users
  (password hashes only, :func:`codeengine.ops.devcluster.acl_users`), the replicas' login,
  and the admin's client certificate and password for the job that creates the cluster.

The material is the development kind (:mod:`codeengine.ops.devtls`, :mod:`~.devsecrets`): a
fresh CA, random passwords, dev keys and dev API credentials. Files are owner-only (0400); run
as root, the job gives each folder to the user that reads it (``--uid``, ``--redis-uid``),
which is what ``codeengine serve --check`` and Redis expect. A production deployment brings its
own material from its PKI and key management instead (docs/deployment.md).
"""

from __future__ import annotations

__all__ = ["RECORDS_USER", "SERVICE_FILES", "main", "make_material", "service_settings", "setting"]

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from codeengine.ops.devcluster import acl_users
from codeengine.ops.devsecrets import ensure_dev_material
from codeengine.ops.devtls import ClusterMaterial, ensure_cluster_material
from codeengine.ops.preflight import ALL_SERVICES, service_files
from codeengine.settings import Settings, SettingsError, load_settings

DEFAULT_MOUNT = "/run/secrets/codeengine"
SERVICE_UID = 10001
"""The user of the codeengine image (deploy/container/Dockerfile)."""
REDIS_UID = 999
"""The ``redis`` user of the official Redis image."""

RECORDS_USER = "records"
"""The records service's ACL user (:data:`codeengine.store.acl.RECORDS_ACL_RULE`), which the
nodes' ACL (:func:`codeengine.ops.devcluster.acl_users`) has beside the services' user."""

SERVICE_FILES: Mapping[str, tuple[str, ...]] = {s: service_files(s) for s in ALL_SERVICES}
"""The files each service opens beyond the shipped configuration, by setting (one list:
codeengine.ops.preflight)."""


def setting(settings: Settings, name: str) -> str:
    """The value of a setting named ``section.key``."""
    section, key = name.split(".")
    return str(getattr(getattr(settings, section), key))


def service_settings(settings: Settings, service: str) -> Settings:
    """The settings ``service`` runs with in the stack: the shared file's, and for the records
    service its own login, :data:`RECORDS_USER` with a password file of that name beside the
    services' (``CODEENGINE_CLUSTER_USERNAME`` and ``_PASSWORD_FILE`` in its environment)."""
    if service != "records":
        return settings
    cluster = settings.cluster
    password = PurePosixPath(cluster.password_file).with_name(f"{RECORDS_USER}.password")
    login = dataclasses.replace(cluster, username=RECORDS_USER, password_file=str(password))
    return dataclasses.replace(settings, cluster=login)


def _below(mount: PurePosixPath, name: str, path: str) -> PurePosixPath:
    """Where ``path`` lies below the mount point; a SettingsError if it does not."""
    try:
        return PurePosixPath(path).relative_to(mount)
    except ValueError:
        raise SettingsError(f"{name}: {path!r} is not below the secrets folder {mount}") from None


def _put(path: Path, data: bytes, uid: int | None) -> None:
    """Write ``data`` owner-only read (0400), given to ``uid`` when run as root."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if uid is not None:
        os.chown(tmp, uid, uid)
    os.replace(tmp, path)


def _give(folder: Path, uid: int | None) -> None:
    """The folder and every folder below it: owner-only, owned by ``uid`` when run as root."""
    for directory in (folder, *(p for p in folder.rglob("*") if p.is_dir())):
        directory.chmod(0o700)
        if uid is not None:
            os.chown(directory, uid, uid)


def _cluster_sources(material: ClusterMaterial, username: str) -> dict[str, Path]:
    return {
        "cluster.password_file": material.password_file(username),
        "cluster.ca_file": material.ca_file,
        "cluster.cert_file": material.client_cert,
        "cluster.key_file": material.client_key,
    }


def make_material(
    settings: Settings,
    out: Path,
    mount: str = DEFAULT_MOUNT,
    *,
    uid: int | None = None,
    redis_uid: int | None = None,
) -> None:
    """Make (or keep) the evaluation stack's material under ``out``; see the module docstring."""
    root = PurePosixPath(mount)
    stage = out / "ops"
    material = ensure_cluster_material(stage / "redis")
    # The dev keys are made where the settings put them, moved from the mount into the stage.
    keys: dict[str, Any] = {
        f.name: str(stage / _below(root, f"keys.{f.name}", getattr(settings.keys, f.name)))
        for f in dataclasses.fields(settings.keys)
        if f.name.endswith("_file")
    }
    ensure_dev_material(
        dataclasses.replace(settings, keys=dataclasses.replace(settings.keys, **keys))
    )
    for service, names in SERVICE_FILES.items():
        own = service_settings(settings, service)
        sources = _cluster_sources(material, own.cluster.username)
        for name in names:
            value = setting(own, name)
            if not value:
                continue  # an optional file this stack does not use (records.password_file)
            relative = _below(root, name, value)
            source = sources.get(name) or stage / relative
            _put(out / service / relative, source.read_bytes(), uid)
        _give(out / service, uid)
    redis = out / "redis"
    replica = material.password("replica")
    files = {
        "ca.crt": material.ca_file.read_bytes(),
        "server.crt": material.server_cert.read_bytes(),
        "server.key": material.server_key.read_bytes(),
        "client.crt": material.client_cert.read_bytes(),
        "client.key": material.client_key.read_bytes(),
        "admin.password": material.password("admin").encode(),
        "users.acl": "\n".join(acl_users(material)).encode() + b"\n",
        "replication.conf": f"masteruser replica\nmasterauth {replica}\n".encode(),
    }
    for name, data in files.items():
        _put(redis / name, data, redis_uid)
    _give(redis, redis_uid)
    _give(stage, None)


def main(argv: Sequence[str] | None = None) -> int:
    """Make the evaluation stack's secrets; errors print one line and exit 2."""
    parser = argparse.ArgumentParser(
        prog="codeengine.ops.evalkit",
        description="Make the evaluation stack's secrets (deploy/compose), each consumer's apart.",
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to fill")
    parser.add_argument("--mount", default=DEFAULT_MOUNT, help="where the services mount theirs")
    parser.add_argument("--uid", type=int, default=SERVICE_UID, help="the services' user")
    parser.add_argument("--redis-uid", type=int, default=REDIS_UID, help="the nodes' user")
    args = parser.parse_args(argv)
    config = os.environ.get("CODEENGINE_CONFIG")
    as_root = os.geteuid() == 0
    try:
        settings = load_settings(Path(config) if config else None)
        make_material(
            settings,
            args.out,
            args.mount,
            uid=args.uid if as_root else None,
            redis_uid=args.redis_uid if as_root else None,
        )
    except (SettingsError, OSError) as exc:
        print(f"evalkit: {exc}", file=sys.stderr)
        return 2
    print(f"evalkit: secrets ready under {args.out} (issuer, verifier, records, redis, ops)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
