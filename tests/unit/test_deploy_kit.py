"""The deployment kit (deploy/) against the code it deploys.

No container runtime, no Kubernetes and no systemd run here, so every recipe is held to what the
code actually reads: each ``CODEENGINE_*`` name is a setting (the settings' own tables), each
settings file loads, ports are the settings' ports, probe paths are routes the apps serve, each
secret lands at the path its setting names and in a form ``codeengine serve`` accepts, the
grace periods outlast the drain, the replicas and CPU are docs/capacity.md's, and the image and
the units start the ``[project.scripts]`` entry point. The records service is held to the same,
and to what is its own: one process, its library on a volume of its own at ``records.path``,
its own Redis login, its own image with the package's ``records`` extra.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import math
import os
import re
import shlex
import stat
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from codeengine import __version__, metrics
from codeengine.code.cities import load_cities
from codeengine.code.macs import MACAlgorithm
from codeengine.code.model import CityCode
from codeengine.keyfiles import load_mac_keyset, load_pepper
from codeengine.ops.devsecrets import ensure_dev_material
from codeengine.ops.devtls import ensure_cluster_material
from codeengine.ops.evalkit import RECORDS_USER, SERVICE_FILES, make_material, setting
from codeengine.records import metrics as records_metrics
from codeengine.records.service import RECORDS_ROUTES
from codeengine.settings import (
    ENV_PREFIX,
    Settings,
    SettingsError,
    load_settings,
)
from codeengine.store.acl import RECORDS_ACL_RULE, SERVICE_ACL_RULE
from codeengine.web.auth import load_credentials
from codeengine.web.routes import Route
from issuer.app import ISSUER_ROUTES
from verifier.app import VERIFIER_ROUTES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "k8s" / "base"
COMPOSE = DEPLOY / "compose"
SYSTEMD = DEPLOY / "systemd"
SERVICES = ("issuer", "verifier")
"""The code services: many worker processes, no state of their own."""
ALL_SERVICES = (*SERVICES, "records")
ROUTES: Mapping[str, list[Route]] = {
    "issuer": ISSUER_ROUTES,
    "verifier": VERIFIER_ROUTES,
    "records": RECORDS_ROUTES,
}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _port(settings: Settings, service: str, management: bool = False) -> int:
    if service == "records":
        records = settings.records
        return records.management_port if management else records.port
    name = f"{service}_management_port" if management else f"{service}_port"
    return int(getattr(settings.service, name))


def _serves(service: str, path: str) -> bool:
    return any(r.method == "GET" and r.path == path for r in ROUTES[service])


def _settings_fields() -> dict[str, set[str]]:
    """Section -> keys, from the settings' own dataclasses."""
    defaults = Settings()
    return {
        section.name: {f.name for f in dataclasses.fields(getattr(defaults, section.name))}
        for section in dataclasses.fields(Settings)
    }


def _is_setting(env_name: str) -> bool:
    """Whether ``CODEENGINE_<SECTION>_<KEY>`` names a field of the settings."""
    rest = env_name.removeprefix(ENV_PREFIX).lower()
    return any(
        rest.startswith(f"{section}_") and rest[len(section) + 1 :] in keys
        for section, keys in _settings_fields().items()
    )


def _check_env(env: Mapping[str, str], config: Path) -> Settings:
    """The settings a process with ``env`` reads; every CODEENGINE_* name must be a setting."""
    for name in env:
        if name.startswith(ENV_PREFIX) and name != f"{ENV_PREFIX}CONFIG":
            assert _is_setting(name), f"{name} is not a setting of codeengine.settings"
    return load_settings(config, env={k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})


# Kubernetes


def _base_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((BASE / resource).read_text()) if d]
    return documents


def _deployments() -> list[dict[str, Any]]:
    """Every workload of the base: the code services' Deployments and the records service's
    StatefulSet, held to the same checks."""
    return [d for d in _base_documents() if d["kind"] in ("Deployment", "StatefulSet")]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _service_of(deployment: dict[str, Any]) -> str:
    args = _container(deployment)["args"]
    assert args[0] == "serve" and args[1] in ALL_SERVICES, args
    return str(args[1])


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", [])}


def _config_map_file() -> Path:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert generator["name"] == "codeengine-config"
    (name,) = generator["files"]
    return BASE / str(name)


def _k8s_settings(deployment: dict[str, Any]) -> Settings:
    """The settings the Deployment's container reads: the ConfigMap's file at the path
    CODEENGINE_CONFIG names, and its environment."""
    container = _container(deployment)
    env = _env(container)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    config = PurePosixPath(env["CODEENGINE_CONFIG"])
    (config_mount,) = [
        m for name, m in mounts.items() if volumes.get(name, {}).get("configMap") is not None
    ]
    assert volumes[config_mount["name"]]["configMap"]["name"] == "codeengine-config"
    assert config.parent == PurePosixPath(config_mount["mountPath"])
    assert config.name == _config_map_file().name
    return _check_env(env, _config_map_file())


def _read_files(service: str, settings: Settings | None = None) -> tuple[str, ...]:
    """The settings naming the files ``service`` reads from its secrets folder (with
    ``settings``: those it sets, an optional file left empty being one it does not read)."""
    names = SERVICE_FILES[service]
    return tuple(n for n in names if settings is None or setting(settings, n))


def test_the_kustomization_lists_every_manifest_of_the_base() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    manifests = [p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"]
    assert sorted(kustomization["resources"]) == sorted(manifests)
    images = {i["name"] for i in kustomization["images"]}
    # The base deploys the image of this checkout's version.
    assert {i["newTag"] for i in kustomization["images"]} == {__version__}
    for deployment in _deployments():
        spec = deployment["spec"]["template"]["spec"]
        for container in spec["containers"] + spec.get("initContainers", []):
            assert container["image"] in images


def test_every_environment_name_is_a_setting_and_the_settings_load() -> None:
    assert _is_setting("CODEENGINE_SERVICE_ISSUER_PORT")
    assert not _is_setting("CODEENGINE_SERVICE_ISSUER_PROT")
    assert not _is_setting("CODEENGINE_WORKERS")
    seen = set()
    for deployment in _deployments():
        settings = _k8s_settings(deployment)
        seen.add((settings.service.city, settings.service.role, _service_of(deployment)))
    assert (0, "primary", "issuer") in seen and (0, "primary", "verifier") in seen
    cities = {(c, r) for c, r, _ in seen if c}
    assert cities and all({(c, "primary"), (c, "backup")} <= cities for c, _ in cities)


def test_ports_are_the_settings_ports_and_services_reach_them() -> None:
    documents = _base_documents()
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    for deployment in _deployments():
        settings = _k8s_settings(deployment)
        service = _service_of(deployment)
        ports = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
        assert ports == {
            "http": _port(settings, service),
            "metrics": _port(settings, service, management=True),
        }
        assert settings.service.host == "0.0.0.0"
        assert settings.service.management_host == "0.0.0.0"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == ports["metrics"]
        front = services[deployment["metadata"]["name"]]
        assert front["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert {p["targetPort"] for p in front["spec"]["ports"]} == set(ports)
        for port in front["spec"]["ports"]:
            assert port["port"] == ports[port["targetPort"]]


def test_probes_ask_routes_the_service_serves() -> None:
    for deployment in _deployments():
        service = _service_of(deployment)
        container = _container(deployment)
        probes = {k: container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe")}
        assert probes["livenessProbe"]["path"] == "/healthz"
        assert probes["readinessProbe"]["path"] == "/readyz"
        for probe in [*probes.values(), container["startupProbe"]["httpGet"]]:
            assert _serves(service, probe["path"]), probe
            assert probe["port"] == "http"


def test_termination_outlasts_the_pre_stop_and_the_drain() -> None:
    for deployment in _deployments():
        settings = _k8s_settings(deployment)
        spec = deployment["spec"]["template"]["spec"]
        lifecycle = _container(deployment).get("lifecycle")
        # The code services' pods leave the Service's endpoints before they stop; the records
        # service has no other endpoint to hand over to, so it has no pre-stop wait.
        assert (lifecycle is None) == (_service_of(deployment) == "records")
        wait = 0.0
        if lifecycle is not None:
            pre_stop = lifecycle["preStop"]["exec"]["command"]
            assert pre_stop[0] == "sleep"
            wait = float(pre_stop[1])
        drain = wait + settings.service.shutdown_timeout_s
        assert spec["terminationGracePeriodSeconds"] > drain


def test_every_deployment_has_a_disruption_budget() -> None:
    documents = _base_documents()
    budgets = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    for deployment in _deployments():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert deployment["spec"]["template"]["metadata"]["labels"] == selector
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"] == selector]
        assert len(matching) == 1, deployment["metadata"]["name"]
        assert matching[0]["spec"]["maxUnavailable"] == 1
    selectors = [json.dumps(d["spec"]["selector"], sort_keys=True) for d in _deployments()]
    assert len(set(selectors)) == len(selectors), "two Deployments select the same pods"


def test_pods_run_unprivileged_on_a_read_only_root() -> None:
    for deployment in _deployments():
        spec = deployment["spec"]["template"]["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == _image_uid()
        assert pod["fsGroup"] == pod["runAsGroup"] == _image_uid()
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        for container in spec["containers"] + spec["initContainers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
        container = _container(deployment)
        writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
        env = _env(container)
        if _service_of(deployment) == "records":
            # One process with plain metrics: the variable, even empty, would switch
            # prometheus-client to multiprocess files in a folder nobody made.
            assert "PROMETHEUS_MULTIPROC_DIR" not in env
            continue
        tmp = PurePosixPath(env["PROMETHEUS_MULTIPROC_DIR"])
        assert any(tmp.is_relative_to(m["mountPath"]) for m in writable)


def test_service_links_are_off_since_their_names_would_stop_the_start() -> None:
    """Kubernetes would give every pod ``<SERVICE>_PORT=tcp://...`` for each Service of the
    namespace: from ``codeengine-issuer``, ``CODEENGINE_ISSUER_PORT``, an unknown setting; from
    ``codeengine-records``, ``CODEENGINE_RECORDS_PORT``, a setting that is not a port."""
    for front in [d for d in _base_documents() if d["kind"] == "Service"]:
        prefix = front["metadata"]["name"].upper().replace("-", "_")
        link = {f"{prefix}_PORT": "tcp://10.0.0.1:8080", f"{prefix}_SERVICE_HOST": "10.0.0.1"}
        with pytest.raises(SettingsError, match=r"unknown setting|expected int"):
            load_settings(_config_map_file(), env=link)
    for deployment in _deployments():
        assert deployment["spec"]["template"]["spec"]["enableServiceLinks"] is False


def _secret_layout(deployment: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Where each Secret item ends up in the service's container: path -> (secret, key)."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    (init,) = spec["initContainers"]
    env = _env(init)
    source, target = PurePosixPath(env["SRC"]), PurePosixPath(env["DST"])
    (copy,) = [m for m in init["volumeMounts"] if m["mountPath"] == str(target)]
    assert volumes[copy["name"]]["emptyDir"]["medium"] == "Memory"
    (seen,) = [m for m in _container(deployment)["volumeMounts"] if m["name"] == copy["name"]]
    assert seen["mountPath"] == str(target) and seen["readOnly"] is True
    layout = {}
    for mount in init["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        folder = PurePosixPath(mount["mountPath"])
        assert folder.parent == source and mount["readOnly"] is True
        # With fsGroup the kubelet makes every file at least 0440: never more than that.
        assert secret["defaultMode"] == 0o440
        for item in secret["items"]:
            path = target / folder.name / item["path"]
            layout[str(path)] = (secret["secretName"], item["key"])
    return layout


def test_each_secret_lands_at_the_path_its_setting_names() -> None:
    for deployment in _deployments():
        service = _service_of(deployment)
        settings = _k8s_settings(deployment)
        layout = _secret_layout(deployment)
        wanted = {setting(settings, name) for name in _read_files(service, settings)}
        # Every file the service reads is there, and nothing else: a verifier pod holds no
        # pepper, KEK, keyring or audit keyset.
        assert set(layout) == wanted, deployment["metadata"]["name"]
        secrets = {secret for secret, _ in layout.values()}
        assert f"codeengine-{service}-keys" in secrets


def _kubelet_secret_volume(folder: Path, files: Mapping[str, bytes]) -> None:
    """A Secret volume as the kubelet makes it: a timestamped folder, ``..data`` pointing at
    it, one link per item, files 0440 (defaultMode with fsGroup)."""
    data = folder / "..2026_12_07_00_00_00.000000000"
    data.mkdir(parents=True)
    for name, content in files.items():
        (data / name).write_bytes(content)
        (data / name).chmod(0o440)
        (folder / name).symlink_to(Path("..data") / name)
    (folder / "..data").symlink_to(data.name)


def _owner_only(path: Path) -> bool:
    """What ``codeengine serve`` asks of a secret file: a regular file its owner alone reads."""
    info = path.stat()
    return stat.S_ISREG(info.st_mode) and not info.st_mode & 0o077 and os.access(path, os.R_OK)


def test_the_init_container_copies_secrets_owner_only(tmp_path: Path) -> None:
    deployment = next(d for d in _deployments() if _service_of(d) == "issuer")
    settings = _k8s_settings(deployment)
    made = tmp_path / "made"
    dev = load_settings(
        env={
            f"{ENV_PREFIX}KEYS_{f.name.upper()}": str(made / f.name)
            for f in dataclasses.fields(settings.keys)
            if f.name.endswith("_file")
        }
    )
    ensure_dev_material(dev)
    tls = ensure_cluster_material(made / "redis")
    content = {
        f"keys.{f.name}": Path(setting(dev, f"keys.{f.name}")).read_bytes()
        for f in dataclasses.fields(dev.keys)
        if f.name.endswith("_file")
    }
    content |= {
        "cluster.password_file": tls.password_file("codeengine").read_bytes(),
        "cluster.ca_file": tls.ca_file.read_bytes(),
        "cluster.cert_file": tls.client_cert.read_bytes(),
        "cluster.key_file": tls.client_key.read_bytes(),
    }
    by_path = {setting(settings, name): name for name in _read_files("issuer")}
    spec = deployment["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    env = _env(init)
    source, target = tmp_path / "src", tmp_path / "dst"
    target.mkdir()
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in init["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        folder = PurePosixPath(mount["mountPath"]).name
        files = {}
        for item in secret["items"]:
            path = str(PurePosixPath(env["DST"]) / folder / item["path"])
            files[item["path"]] = content[by_path[path]]
        _kubelet_secret_volume(source / folder, files)
    # An optional Secret that is absent leaves an empty folder.
    (source / "absent").mkdir()
    script = init["command"] + init["args"]
    assert script[:2] == ["sh", "-c"]
    subprocess.run(
        script,
        env={"PATH": os.environ["PATH"], "SRC": str(source), "DST": str(target)},
        check=True,
        timeout=30,
    )
    for path, name in by_path.items():
        copied = target / PurePosixPath(path).relative_to(env["DST"])
        assert copied.read_bytes() == content[name]
        assert _owner_only(copied), f"{name}: mode {stat.S_IMODE(copied.stat().st_mode):o}"
    load_pepper(target / "keys" / "kek")
    load_mac_keyset(target / "keys" / "record-mac.json", MACAlgorithm.HMAC_SHA256)
    load_credentials(target / "keys" / "credentials.json")
    assert sorted(p.name for p in (target / "keys").iterdir()) == sorted(
        PurePosixPath(p).name for p in by_path if p.startswith(f"{env['DST']}/keys/")
    )


MIN_REPLICAS = 2
"""The fewest pods of any Deployment (one may be drained while the other serves)."""


def _capacity_fleet() -> dict[str, int]:
    """The daily-mix column of docs/capacity.md's fleet table."""
    page = (ROOT / "docs" / "capacity.md").read_text()
    found = {}
    for service in SERVICES:
        match = re.search(rf"^\| {service} processes \(one core each\) \| ([\d,]+) \|", page, re.M)
        assert match, f"docs/capacity.md has no row of {service} processes"
        found[service] = int(match.group(1).replace(",", ""))
    return found


def _records_cores() -> int | None:
    """The daily-mix cores of docs/capacity.md's records tier, if the page has one."""
    page = (ROOT / "docs" / "capacity.md").read_text()
    match = re.search(r"^\| records cores \(ingest[^|]*\| ([\d,]+) \|", page, re.M)
    return int(match.group(1).replace(",", "")) if match else None


def test_replicas_and_cpu_are_the_capacity_plans() -> None:
    fleet = _capacity_fleet()
    cities = load_cities()
    residents = sum(c.residents_millions for c in cities.values())
    for deployment in _deployments():
        service = _service_of(deployment)
        settings = _k8s_settings(deployment)
        if service == "records":
            # One process for the deployment, whatever the load: its cores are its request.
            assert deployment["spec"]["replicas"] == 1
            cores = _records_cores()
            cpu = float(_container(deployment)["resources"]["requests"]["cpu"])
            assert cpu == (cores if cores is not None else 2), "docs/capacity.md's records tier"
            continue
        workers = settings.service.workers
        assert workers >= 1, "a pod must say how many workers: the node's cores are not its own"
        processes = deployment["spec"]["replicas"] * workers
        if settings.service.city:
            share = cities[CityCode(settings.service.city)].residents_millions / residents
            planned = math.ceil(fleet[service] * share)
        else:
            planned = fleet[service]
        # Never fewer than two: the PodDisruptionBudget lets one go at a time, and a drain of
        # a lone pod would take its endpoint down.
        assert processes == max(MIN_REPLICAS, planned), deployment["metadata"]["name"]
        requests = _container(deployment)["resources"]["requests"]
        # One worker process per core, as the plan counts them.
        assert float(requests["cpu"]) == workers


def test_the_config_map_names_no_development_path() -> None:
    settings = load_settings(_config_map_file(), env={})
    for service in ALL_SERVICES:
        for name in _read_files(service, settings):
            assert setting(settings, name).startswith("/run/secrets/codeengine/"), name
    # The records service's library is not below the working folder the default names.
    assert PurePosixPath(settings.records.path).is_absolute()


def _records_workload() -> dict[str, Any]:
    (records,) = [d for d in _deployments() if _service_of(d) == "records"]
    return records


def test_the_records_service_is_one_pod_that_never_shares_its_volume() -> None:
    records = _records_workload()
    spec = records["spec"]
    # A StatefulSet replaces its pod only once the old one is gone; a Deployment's rolling
    # update would start the new pod beside the old one, on the same library.
    assert records["kind"] == "StatefulSet" and spec["replicas"] == 1
    assert spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    services = {d["metadata"]["name"] for d in _base_documents() if d["kind"] == "Service"}
    assert spec["serviceName"] in services
    (claim,) = spec["volumeClaimTemplates"]
    assert set(claim["spec"]["accessModes"]) <= {"ReadWriteOnce", "ReadWriteOncePod"}
    settings = _k8s_settings(records)
    (data,) = [
        m for m in _container(records)["volumeMounts"] if m["name"] == claim["metadata"]["name"]
    ]
    # The claim is mounted, writable, exactly where the settings put the library.
    assert data["mountPath"] == settings.records.path and not data.get("readOnly")
    assert settings.records.server_url == ""
    volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
    assert claim["metadata"]["name"] not in volumes, "a pod volume would hide the claim"


def test_the_records_service_logs_in_as_its_own_user() -> None:
    records = _records_workload()
    settings = _k8s_settings(records)
    assert settings.cluster.username == RECORDS_USER
    layout = _secret_layout(records)
    assert layout[settings.cluster.password_file] == ("codeengine-redis-client", "records.password")
    # And no code key: only the API credentials, besides its login.
    keys = {key for secret, key in layout.values() if secret == "codeengine-records-keys"}
    assert keys == {"credentials.json"}
    # Its image is the one with the records extra (the Dockerfile's records target).
    images = {
        i["name"] for i in yaml.safe_load((BASE / "kustomization.yaml").read_text())["images"]
    }
    assert _container(records)["image"] == "codeengine-records" and "codeengine-records" in images


# The image


def _dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = (DEPLOY / "container" / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _stages() -> dict[str, list[str]]:
    """Each stage's instructions by its name (``FROM ... AS name``), in the file's order."""
    stages: dict[str, list[str]] = {}
    for line in _dockerfile():
        if line.startswith("FROM "):
            words = line.split()
            assert len(words) == 4 and words[2] == "AS", f"an unnamed stage: {line}"
            stages[words[3]] = []
            current = stages[words[3]]
        if stages:
            current.append(line)
    return stages


IMAGES = {"service": SERVICES, "records": ("records",)}
"""The final stages (the default target last: the code services) and what each serves."""


def _image_uid(stage: str = "service") -> int:
    (user,) = [line for line in _stages()[stage] if line.startswith("USER ")]
    uid, _, gid = user.split()[1].partition(":")
    assert uid == gid
    return int(uid)


def test_the_images_install_the_wheel_and_start_the_entry_point() -> None:
    stages = _stages()
    assert list(stages) == ["build", "runtime", "records", "service"], "service is the default"
    args = {
        line.split()[1].split("=")[0]: line.split("=", 1)[1]
        for line in _dockerfile()
        if line.startswith("ARG ")
    }
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert stages["runtime"][0] == "FROM ${PYTHON_IMAGE} AS runtime"
    run = " ".join(" ".join(line.split()) for line in stages["build"] if line.startswith("RUN "))
    assert "pip wheel --no-deps --wheel-dir /dist ." in run
    # One wheelhouse for both images: the wheel's dependencies and its records extra's.
    assert (
        'set -- /dist/codeengine-*.whl && python -m pip wheel --wheel-dir /wheels "$1[records]"'
        in run
    )
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts["codeengine"] == "codeengine.ops.cli:main"
    for stage, served in IMAGES.items():
        final = stages[stage]
        assert final[0] == f"FROM runtime AS {stage}"
        (install,) = [line for line in final if "pip install" in line]
        assert (
            "from=build,source=/wheels" in install and "--no-index --find-links /wheels" in install
        )
        wanted = '"codeengine[records]"' if stage == "records" else "codeengine"
        assert re.search(
            rf"pip install --no-index --find-links /wheels {re.escape(wanted)}( |$)", install
        )
        assert "pip uninstall --yes pip setuptools wheel" in install
        for line in [*stages["runtime"], *final]:
            assert not re.search(r"apt-get|gcc|build-essential|COPY \. ", line), line
        # The entry point is the console script the wheel installs.
        (entry,) = [line for line in final if line.startswith("ENTRYPOINT")]
        assert json.loads(entry.split(None, 1)[1]) == [next(iter(scripts))]
        (command,) = [line for line in final if line.startswith("CMD")]
        assert json.loads(command.split(None, 1)[1]) == ["serve", served[-1]]
        assert _image_uid(stage) != 0 and _image_uid(stage) == _image_uid()


def test_the_records_extra_is_the_engine_and_no_image_sets_the_metrics_folder() -> None:
    extra = PYPROJECT["project"]["optional-dependencies"]["records"]
    assert {re.split(r"[<>=\[]", d)[0] for d in extra} == {"chdb-core", "clickhouse-connect"}
    # prometheus-client turns multiprocess when the variable is set at all; a container cannot
    # unset what its image sets, so the image leaves it to the code services' recipes.
    env = [line for line in _dockerfile() if line.startswith("ENV ")]
    assert env and not [line for line in env if "PROMETHEUS_MULTIPROC_DIR" in line]
    # The records image's data folder, where the recipes mount the volume, is the user's.
    records = _stages()["records"]
    made = " ".join(line for line in records if line.startswith("RUN install -d"))
    uid = _image_uid("records")
    assert f"-o {uid} -g {uid}" in made and "/var/lib/codeengine/records" in made


def _build_inputs() -> set[str]:
    """The top-level files and folders the wheel is built from, by pyproject.toml: the
    packages (found by pattern, or listed and mapped by package-dir), readme and licence."""
    tool = PYPROJECT["tool"]["setuptools"]
    packages = tool.get("packages", {})
    folders: dict[str, str] = tool.get("package-dir", {})
    if isinstance(packages, dict):
        tops = {p.rstrip("*").split(".")[0] for p in packages["find"]["include"]}
    else:
        tops = set()
        for package in packages:
            mapped = [m for m in folders if package == m or package.startswith(f"{m}.")]
            found = folders[max(mapped, key=len)] if mapped else package
            tops.add(found.replace(".", "/").split("/")[0])
    project = PYPROJECT["project"]
    return tops | {"pyproject.toml", project["readme"], *project.get("license-files", [])}


def test_the_image_gets_every_file_the_wheel_is_built_from() -> None:
    build = _stages()["build"]
    copied = [word for line in build if line.startswith("COPY ") for word in line.split()[1:-1]]
    for needed in _build_inputs():
        assert any(fnmatch.fnmatch(needed, word) for word in copied), needed
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    # Everything is left out but what is named again: never var/ (dev keys and passwords).
    assert ignore[0] == "**" and not [line for line in ignore if "var" in line]
    for needed in _build_inputs():
        assert f"!{needed}" in ignore or f"!{needed}/" in ignore, needed


def test_each_image_health_check_asks_its_services_readiness() -> None:
    defaults = Settings()
    for stage, served in IMAGES.items():
        final = _stages()[stage]
        (check,) = [line for line in final if line.startswith("HEALTHCHECK")]
        code = json.loads(check.split("CMD", 1)[1])[-1]
        ports = [_port(defaults, s) for s in served]
        assert [int(p) for p in re.findall(r"\b(\d{4})\b", code)] == ports, stage
        assert "/readyz" in code and all(_serves(s, "/readyz") for s in served)
        exposed = {int(p) for line in final if line.startswith("EXPOSE") for p in line.split()[1:]}
        assert exposed == {_port(defaults, s, m) for s in served for m in (False, True)}, stage


# Compose


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((COMPOSE / "compose.yaml").read_text()))


def _volumes(service: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (volume or host path, read-only)."""
    found = {}
    for spec in service.get("volumes", []):
        source, target, *mode = spec.split(":")
        found[target] = (source, mode == ["ro"])
    return found


def _compose_settings(service: Mapping[str, Any]) -> Settings:
    env = {k: str(v) for k, v in service["environment"].items()}
    (host,) = [s for t, (s, _) in _volumes(service).items() if t == env["CODEENGINE_CONFIG"]]
    return _check_env(env, COMPOSE / host)


def _duration_s(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, text
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_compose_services_serve_their_ports_and_outlast_the_drain() -> None:
    services = _compose()["services"]
    for name in ALL_SERVICES:
        service = services[name]
        settings = _compose_settings(service)
        assert service["command"] == ["serve", name]
        assert service["read_only"] is True
        (published,) = service["ports"]
        host, _, inside = published.split(":")
        assert host == "127.0.0.1" and int(inside) == _port(settings, name)
        url = service["healthcheck"]["test"][-1]
        found = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", url)
        assert found and int(found.group(1)) == _port(settings, name)
        assert found.group(2) == "/readyz" and _serves(name, "/readyz")
        grace = _duration_s(service["stop_grace_period"])
        assert grace > settings.service.shutdown_timeout_s
        if name == "records":
            assert "PROMETHEUS_MULTIPROC_DIR" not in service["environment"]
            continue
        metrics = PurePosixPath(service["environment"]["PROMETHEUS_MULTIPROC_DIR"])
        memory = [PurePosixPath(t.split(":")[0]) for t in service["tmpfs"]]
        assert any(metrics.is_relative_to(m) and m != PurePosixPath("/") for m in memory)


def test_compose_records_keeps_its_library_on_a_named_volume_from_its_image() -> None:
    compose = _compose()
    records = compose["services"]["records"]
    settings = _compose_settings(records)
    assert records["build"]["target"] == "records" and "records" in _stages()
    assert records["image"] != compose["services"]["issuer"]["image"]
    volume, read_only = _volumes(records)[settings.records.path]
    # A named volume of the stack (it outlives the container), writable, its alone.
    assert volume in compose["volumes"] and not read_only
    users = [
        n for n, s in compose["services"].items() if volume in {v for v, _ in _volumes(s).values()}
    ]
    assert users == ["records"]
    assert settings.cluster.username == RECORDS_USER


def test_prometheus_scrapes_the_management_ports() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    wanted = set()
    for name in ALL_SERVICES:
        settings = _compose_settings(services[name])
        wanted.add(f"{name}:{_port(settings, name, management=True)}")
        assert settings.service.management_host == "0.0.0.0"
    assert targets == wanted
    # A target label named like a label of the metrics would rename theirs exported_<name>.
    ours = {
        n
        for module in (metrics, records_metrics)
        for v in vars(module).values()
        if isinstance(v, MetricWrapperBase)
        for n in v._labelnames
    }
    assert "service" in ours
    given = {
        n
        for job in config["scrape_configs"]
        for s in job["static_configs"]
        for n in s.get("labels", {})
    }
    assert not given & ours
    mounts = _volumes(services["prometheus"])
    (rules,) = config["rule_files"]
    # The alert rules are deploy/prometheus/alerts.yml, mounted where the config reads them.
    assert (COMPOSE / mounts[rules][0]).resolve() == DEPLOY / "prometheus" / "alerts.yml"
    for target, (source, _) in mounts.items():
        if source.startswith(".") and target != rules:
            assert (COMPOSE / source).exists(), source


def _compose_material(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    compose = _compose()
    init = compose["services"]["secrets-init"]
    argv = init["command"]
    options = dict(zip(argv[::2], argv[1::2], strict=True))
    settings = _compose_settings(init)
    out = tmp_path / "out"
    make_material(settings, out, options["--mount"])
    return out, compose


def test_compose_secrets_are_each_services_files_at_its_settings_paths(tmp_path: Path) -> None:
    out, compose = _compose_material(tmp_path)
    init = compose["services"]["secrets-init"]
    argv = init["command"]
    options = dict(zip(argv[::2], argv[1::2], strict=True))
    init_mounts = {source: target for target, (source, _) in _volumes(init).items()}
    assert int(options["--uid"]) == _image_uid()
    for name in ALL_SERVICES:
        service = compose["services"][name]
        settings = _compose_settings(service)
        mounts = _volumes(service)
        volume, read_only = mounts[options["--mount"]]
        assert read_only
        # The init job fills that volume with this service's folder.
        assert init_mounts[volume] == f"{options['--out']}/{name}"
        held = {p.relative_to(out / name) for p in (out / name).rglob("*") if p.is_file()}
        wanted = set()
        for file_setting in _read_files(name, settings):
            path = PurePosixPath(setting(settings, file_setting))
            relative = path.relative_to(options["--mount"])
            made = out / name / relative
            assert _owner_only(made), file_setting
            wanted.add(Path(relative))
        assert held == wanted
    load_credentials(out / "verifier" / "keys" / "credentials.json")
    assert not (out / "verifier" / "keys" / "pepper").exists()
    assert not (out / "records" / "keys" / "record-mac.json").exists()


def test_compose_nodes_get_the_acl_users_the_services_log_in_with(tmp_path: Path) -> None:
    out, compose = _compose_material(tmp_path)
    node = compose["services"]["redis-0"]
    mounts = _volumes(node)
    conf_source = next(s for t, (s, _) in mounts.items() if t.endswith("node.conf"))
    conf = (COMPOSE / conf_source).read_text()
    (secrets_mount,) = [t for t, (s, _) in mounts.items() if s == "redis-secrets"]
    files = re.findall(rf"^\S+ ({re.escape(secrets_mount)}/\S+)$", conf, re.M)
    assert len(files) == 5
    for path in files:
        assert (out / "redis" / PurePosixPath(path).relative_to(secrets_mount)).exists(), path
    for line in (
        "port 0",
        "appendonly yes",
        "tls-auth-clients yes",
        "tls-cluster yes",
        "tls-replication yes",
        "stream-node-max-bytes 1024",
    ):
        assert re.search(rf"^{line}$", conf, re.M), line
    acl = (out / "redis" / "users.acl").read_text().splitlines()
    # Each service's login, as its compose settings name it, with the password its volume holds.
    for name, rule in (("verifier", SERVICE_ACL_RULE), ("records", RECORDS_ACL_RULE)):
        settings = _compose_settings(compose["services"][name])
        held = PurePosixPath(settings.cluster.password_file).relative_to("/run/secrets/codeengine")
        password = (out / name / held).read_text().strip()
        digest = hashlib.sha256(password.encode()).hexdigest()
        user = f"user {settings.cluster.username} on #{digest} {rule}"
        assert user in acl, name
    assert _compose_settings(compose["services"]["records"]).cluster.username == RECORDS_USER
    settings = _compose_settings(compose["services"]["verifier"])
    assert "user default off resetchannels ~* &* +@all" in acl
    nodes = [
        s
        for n, s in compose["services"].items()
        if n.startswith("redis-") and "command" in s and s["command"][0] == "redis-server"
    ]
    addresses = {n["networks"]["codeengine"]["ipv4_address"] for n in nodes}
    tls_port = re.search(r"^tls-port (\d+)$", conf, re.M)
    assert tls_port is not None
    wanted = [f"{a}:{tls_port.group(1)}" for a in sorted(addresses)]
    assert settings.cluster.nodes.split(",") == wanted
    assert len(nodes) == 6


# systemd


def _unit(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def _env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split("=", 1) for line in lines)


def _units() -> Iterator[tuple[str, dict[str, str], dict[str, list[str]]]]:
    """(service, environment, unit) of every province unit and every example city endpoint."""
    for service in ALL_SERVICES:
        yield service, {}, _unit(SYSTEMD / f"codeengine-{service}.service")
    template = _unit(SYSTEMD / "codeengine-city@.service")
    for path in sorted((SYSTEMD / "cities").glob("*.env")):
        env = _env_file(path)
        yield env["SERVICE"], env, template


def test_units_start_the_entry_point_with_serve() -> None:
    script = next(iter(PYPROJECT["project"]["scripts"]))
    for service, env, unit in _units():
        (start,) = unit["ExecStart"]
        argv = [env.get(a[2:-1], a) if a.startswith("${") else a for a in shlex.split(start)]
        assert PurePosixPath(argv[0]).name == script
        assert argv[1:] == ["serve", service]
        assert unit["KillSignal"] == ["SIGTERM"] and unit["User"] == ["codeengine"]
        for option in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "RestrictSUIDSGID"):
            assert unit[option] == ["yes"], option
        assert unit["ProtectSystem"] == ["strict"] and unit["CapabilityBoundingSet"] == [""]


def test_units_outlast_the_drain_and_read_real_settings() -> None:
    config = SYSTEMD / "engine.toml"
    ports: dict[int, str] = {}
    for service, env, unit in _units():
        environment = dict(value.split("=", 1) for value in unit["Environment"])
        assert PurePosixPath(environment["CODEENGINE_CONFIG"]).name == config.name
        settings = _check_env(environment | env, config)
        (timeout,) = unit["TimeoutStopSec"]
        assert float(timeout) > settings.service.shutdown_timeout_s
        if service == "records":
            assert "PROMETHEUS_MULTIPROC_DIR" not in environment
        else:
            assert unit["RuntimeDirectory"][0] in environment["PROMETHEUS_MULTIPROC_DIR"]
        for management in (False, True):
            port = _port(settings, service, management)
            name = f"{service} {env.get('CODEENGINE_SERVICE_CITY', 'province')} " + (
                env.get("CODEENGINE_SERVICE_ROLE", "") + (" metrics" if management else "")
            )
            assert port not in ports, f"{name} and {ports.get(port)} share port {port}"
            ports[port] = name
        if settings.service.city:
            city = load_cities()[CityCode(settings.service.city)]
            primary, backup = city.endpoints(service)
            url = primary if settings.service.role == "primary" else backup
            assert url.endswith(f":{_port(settings, service)}"), url
    for service, env, unit in _units():
        environment = dict(value.split("=", 1) for value in unit["Environment"])
        settings = _check_env(environment | env, config)
        for name in _read_files(service, settings):
            assert setting(settings, name).startswith("/etc/codeengine/secrets/"), name


def test_the_records_unit_keeps_its_library_in_its_state_folder() -> None:
    unit = _unit(SYSTEMD / "codeengine-records.service")
    environment = dict(value.split("=", 1) for value in unit["Environment"])
    settings = _check_env(environment, SYSTEMD / "engine.toml")
    (state,) = unit["StateDirectory"]
    # systemd makes /var/lib/<StateDirectory> the service user's and writable under
    # ProtectSystem=strict: that is where the settings put the library, and nowhere else.
    assert settings.records.path == f"/var/lib/{state}"
    assert unit["StateDirectoryMode"] == ["0700"]
    assert not [k for k in unit if k in ("ReadWritePaths", "ReadWriteDirectories")]
    assert settings.cluster.username == RECORDS_USER
    assert PurePosixPath(settings.cluster.password_file).name == f"{RECORDS_USER}.password"
    # The code services' units name the services' login, not the records user's.
    for service in SERVICES:
        other = _unit(SYSTEMD / f"codeengine-{service}.service")
        assert not [v for v in other["Environment"] if "CLUSTER_USERNAME" in v]


def test_every_settings_file_of_the_kit_loads() -> None:
    files = sorted(DEPLOY.rglob("*.toml"))
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "compose/engine.toml",
        "k8s/base/engine.toml",
        "systemd/engine.toml",
    }
    for path in files:
        load_settings(path, env={})


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.y*ml")), ids=lambda p: p.name)
def test_every_manifest_parses(path: Path) -> None:
    assert [d for d in yaml.safe_load_all(path.read_text()) if d]
