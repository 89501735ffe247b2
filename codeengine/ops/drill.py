"""Failover drills: inject a fault under mixed load and report what it cost.

``codeengine drill NAME`` starts its own world on loopback (a 3+3 Redis Cluster, dev keys, one
city's primary and backup issuer and verifier as real processes), runs the mixed load through
the failover client, injects the fault at ``fault_at_s``, and writes a JSON and a Markdown
report. The drills:

* ``kill-primary``: SIGKILL the city's primary issuer and verifier; restart them later.
* ``kill-redis-master``: SIGKILL the Redis master of one shard; restart it later (a replica).
* ``pause-redis-master``: SIGSTOP one master for ``pause_s``, then SIGCONT.
* ``planned-failover``: hand the city's writes to the backup, stop the primary gracefully,
  start it again and hand back.

What is checked, against an operation log of every acknowledged status change: changes lost
(an acknowledged ``op_id`` missing from the subject's audit trail); fencing (within each
subject's audit trail the epochs never go down, and no entry of the old primary's epoch was
written after the switch); requests failed and how (as the app sees them, after the client's
failover, and every refused attempt); recovery times; the throughput of the shards the fault
did not touch; latency percentiles; and a pass or fail for each goal.
"""

from __future__ import annotations

__all__ = ["DRILLS", "DrillOptions", "DrillWorld", "Pacer", "goal", "goals_table", "run_drill"]

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import os
import random
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from codeengine.code.breaker import Breaker
from codeengine.code.cities import load_cities
from codeengine.code.errors import StoreUnavailable
from codeengine.code.fencing import Role, Switch
from codeengine.code.identifiers import make_resident_id
from codeengine.code.model import CityCode, SubjectId
from codeengine.code.shipped import shipped_dir
from codeengine.ops.commands import store_keys
from codeengine.ops.devcluster import DevCluster, find_free_base_port
from codeengine.ops.devsecrets import ensure_dev_material
from codeengine.ops.topology import CityProcesses, on_free_ports
from codeengine.settings import ENV_PREFIX, load_settings, parse_nodes
from codeengine.store import keyspace
from codeengine.store.cluster import FastCluster
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import store_settings
from failover.client import Answer, FailoverClient

log = logging.getLogger("codeengine.drill")
T = TypeVar("T")

CONFIGS = shipped_dir()
DRILLS = ("kill-primary", "kill-redis-master", "pause-redis-master", "planned-failover")
COLOURS = ("green", "yellow", "red")
PROBE_INTERVAL_S = 0.25
ATTEMPT_TIMEOUT_S = 2.0
"""One attempt's wait for an answer: the services' write deadline (1.5 s) plus a read (0.25 s)
and some slack; past it the client tries again while the request's budget lasts."""
RESTORE_AFTER_S = {
    "kill-primary": 20.0,
    # A killed Redis process is started again by its supervisor (systemd's Restart=always with
    # RestartSec=2): until it is back as a replica, its shard has no replica to acknowledge to.
    "kill-redis-master": 2.0,
    "pause-redis-master": 0.0,
    "planned-failover": 20.0,
}


@dataclass(frozen=True)
class DrillOptions:
    """How long, how hard, and where a drill runs."""

    city: int = 320100
    duration_s: float = 60.0
    fault_at_s: float = 20.0
    restore_after_s: float | None = None
    """The killed or stopped part comes back this long after the fault (default: by drill,
    ``RESTORE_AFTER_S``)."""
    pause_s: float = 6.0
    rate: float = 200.0
    """Requests a second the load aims at (all workers together)."""
    subjects: int = 120
    target: str = "data"
    """The Redis drills' victim: a ``data`` shard, or the ``lease`` shard of the city."""
    budget_s: float = 5.0
    """Each request's deadline as the app sees it, failover and retries included."""
    out_dir: Path = Path("var/drills")
    work_dir: Path | None = None


@dataclass
class _Request:
    at: float
    op: str
    shard: int
    latency: float
    ok: bool
    outcome: str
    endpoint: str


@dataclass
class _Subject:
    subject: SubjectId
    shard: int
    version: int
    token: str = ""


@dataclass
class _Load:
    """The running load: its requests, its acknowledged status changes, its stop flag."""

    issuer: FailoverClient
    verifier: FailoverClient
    headers: dict[str, dict[str, str]]
    city: int
    started: float
    requests: list[_Request] = field(default_factory=list)
    acked: list[tuple[SubjectId, str, int]] = field(default_factory=list)
    stop: bool = False
    starved: int = 0
    """Ticks with every subject busy: the load fell short of its rate by this many requests."""

    async def call(
        self, op: str, subject: _Subject, client: FailoverClient, method: str, path: str, body: Any
    ) -> Answer | None:
        """One request of the mix; ``op`` (display, verify, convert) is also the scope it needs."""
        at = time.monotonic()
        try:
            # Every request of the mix is safe to resend: display reads, a convert carries its
            # op_id, and a resent scan is at worst logged twice.
            answer = await client.request(
                method, path, json_body=body, headers=self.headers[op], idempotent=True
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._record(at, op, subject, False, f"no answer ({type(exc).__name__})", "")
            return None
        ok = answer.status < 400 or answer.reason == "VERSION_CONFLICT"
        outcome = "ok" if ok else f"{answer.status} {answer.reason}".rstrip()
        self._record(at, op, subject, ok, outcome, answer.endpoint.value)
        return answer

    def _record(
        self, at: float, op: str, subject: _Subject, ok: bool, outcome: str, endpoint: str
    ) -> None:
        latency = time.monotonic() - at
        self.requests.append(
            _Request(at - self.started, op, subject.shard, latency, ok, outcome, endpoint)
        )

    async def step(self, rng: random.Random, subject: _Subject) -> None:
        roll = rng.random()
        if roll < 0.45 or (roll < 0.9 and not subject.token):
            answer = await self.call(
                "display", subject, self.issuer, "GET", f"/v1/subjects/{subject.subject}/code", None
            )
            if answer is not None and answer.status == 200:
                subject.token = answer.json()["token"]
        elif roll < 0.9:
            body = {"code": subject.token, "terminal": "drill-gate-1", "city": self.city}
            await self.call("verify", subject, self.verifier, "POST", "/v1/verify", body)
        else:
            op_id = uuid.uuid4().hex
            body = {
                "colour": rng.choice(COLOURS),
                "reason": "drill",
                "if_version": subject.version,
                "op_id": op_id,
            }
            path = f"/v1/subjects/{subject.subject}/status"
            answer = await self.call("convert", subject, self.issuer, "POST", path, body)
            if answer is None:
                return
            try:
                document = answer.json()
            except ValueError:
                return  # not the engine's answer (a proxy's page): already counted as failed
            if answer.status == 200:
                subject.version = int(document["version"])
                self.acked.append((subject.subject, op_id, subject.version))
            elif answer.reason == "VERSION_CONFLICT":
                # A change whose answer was lost did land: carry on from the stored version.
                subject.version = int(document["current_version"])

    async def drive(self, rng: random.Random, subjects: list[_Subject], rate: float) -> None:
        """Open loop: start a request every 1/rate s, on a subject with none in flight.

        Requests do not wait for each other, so a shard that stalls holds up only its own
        subjects, as it would for a fleet of independent phones and gates; each subject has at
        most one request in flight, so its status changes stay in order.
        """
        idle = list(subjects)
        running: set[asyncio.Task[None]] = set()

        async def one(subject: _Subject) -> None:
            try:
                await self.step(rng, subject)
            finally:
                idle.append(subject)

        pacer = Pacer(rate)
        while not self.stop:
            if idle:
                subject = idle.pop(rng.randrange(len(idle)))
                task = asyncio.create_task(one(subject))
                running.add(task)
                task.add_done_callback(running.discard)
            else:
                self.starved += 1
            await pacer.next()
        if running:
            await asyncio.gather(*running)


class Pacer:
    """An open loop's clock: ``next()`` returns at ``rate`` a second, on schedule whatever the
    requests take; a generator that fell more than a second behind starts again from now
    rather than bursting to catch up."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate
        self.next_at = time.monotonic()

    async def next(self) -> None:
        self.next_at += self.interval
        delay = self.next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:
            self.next_at = time.monotonic()


class DrillWorld:
    """A drill's cluster, keys and city processes, started and stopped for it alone.

    ``settings_env`` adds settings (``CODES_DISPLAY_TTL_S``, ...; without the prefix) that
    the processes and the drill share, so a drill can run with short lifetimes.
    """

    def __init__(
        self, city: int, work: Path, settings_env: Mapping[str, str] | None = None
    ) -> None:
        self.work = work
        # Persistent, as in production and `make run`: a master killed and started again by
        # its supervisor before the cluster failed it over must come back with its data, not
        # empty (a restarted empty master wipes its shard; a drill without AOF showed it).
        self.cluster = DevCluster(work / "cluster", find_free_base_port(), persistent=True)
        env_settings = {
            "KEYS_KEYRING_FILE": str(work / "keys" / "keyring.json"),
            "KEYS_KEK_FILE": str(work / "keys" / "kek"),
            "KEYS_PEPPER_FILE": str(work / "keys" / "pepper"),
            "KEYS_ALIAS_KEY_FILE": str(work / "keys" / "alias-key"),
            "KEYS_RECORD_MAC_FILE": str(work / "keys" / "record-mac.json"),
            "KEYS_AUDIT_MAC_FILE": str(work / "keys" / "audit-mac.json"),
            "KEYS_CHECKPOINT_KEY_FILE": str(work / "keys" / "checkpoint-ed25519.pem"),
            # The drill's own anchor: its terminals are configured with it, and no drill signs
            # lists with the anchor of the checkout's `make run`.
            "KEYS_TRUST_ANCHOR_FILE": str(work / "keys" / "trust-anchor.json"),
            "KEYS_CREDENTIALS_FILE": str(work / "credentials.json"),
            "CODES_RULES_FILE": str(CONFIGS / "rules.toml"),
            "CODES_FUSION_FILE": str(CONFIGS / "fusion.toml"),
            **(settings_env or {}),
        }
        self.env = {f"{ENV_PREFIX}{k}": v for k, v in env_settings.items()}
        self.env |= self.cluster.client_env()
        self.settings = load_settings(None, self.env)
        self.city = on_free_ports(load_cities()[CityCode(city)])
        self.procs = CityProcesses(self.city, self._process_env(), work / "log")

    def _process_env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        return base | self.env

    def start(self, roles: Sequence[Role] = tuple(Role)) -> dict[str, dict[str, str]]:
        """Start the cluster and ``roles``' endpoints; each scope's dev API headers."""
        self.cluster.start()
        credentials = ensure_dev_material(self.settings)
        for role in roles:
            self.procs.start(role)
        for role in roles:
            self.procs.wait_ready(role)
        document = json.loads(credentials.read_text())
        by_scope = {c["scopes"][0]: c["key"] for c in document["clients"]}
        return {s: {"Authorization": f"Bearer {k}"} for s, k in by_scope.items()}

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.procs.stop()
        self.cluster.stop()

    def store(self) -> RedisStore:
        store = RedisStore(store_settings(self.settings))
        # The drill reads what the services wrote: it holds their MAC keys, as ops does.
        store.keys = store_keys(self.settings)
        return store


def _restore_s(options: DrillOptions) -> float:
    assert options.restore_after_s is not None, "run_drill fills it in"
    return options.restore_after_s


Fault = Callable[[DrillWorld, DrillOptions, dict[str, Any]], Coroutine[Any, Any, None]]


async def _kill_primary(world: DrillWorld, options: DrillOptions, notes: dict[str, Any]) -> None:
    world.procs.signal(Role.PRIMARY, signal.SIGKILL)
    notes["fault"] = "SIGKILL of the city's primary issuer and verifier"
    await asyncio.sleep(_restore_s(options))
    world.procs.stop(Role.PRIMARY)
    world.procs.start(Role.PRIMARY)
    notes["restored_at_s"] = options.fault_at_s + _restore_s(options)


async def _kill_redis_master(
    world: DrillWorld, options: DrillOptions, notes: dict[str, Any]
) -> None:
    port = int(notes["target_master"])
    world.cluster.signal(port, signal.SIGKILL)
    notes["fault"] = f"SIGKILL of Redis master :{port}"
    await asyncio.sleep(_restore_s(options))
    await asyncio.to_thread(world.cluster.restart_node, port)
    notes["restored_at_s"] = options.fault_at_s + _restore_s(options)


async def _pause_redis_master(
    world: DrillWorld, options: DrillOptions, notes: dict[str, Any]
) -> None:
    port = int(notes["target_master"])
    world.cluster.signal(port, signal.SIGSTOP)
    notes["fault"] = f"SIGSTOP of Redis master :{port} for {options.pause_s:g} s"
    try:
        await asyncio.sleep(options.pause_s)
    finally:
        world.cluster.signal(port, signal.SIGCONT)
    notes["restored_at_s"] = options.fault_at_s + options.pause_s


async def _planned_failover(
    world: DrillWorld, options: DrillOptions, notes: dict[str, Any]
) -> None:
    store = world.store()
    lease_ms = world.settings.fence.lease_ms
    hold_ms = int((_restore_s(options) + 30) * 1000)
    try:
        await store.fence_handover(options.city, Role.BACKUP, hold_ms, lease_ms)
        notes["fault"] = "handover to the backup, then SIGTERM of the primary (graceful)"
        # Clients see the primary draining (not ready) and move before it stops.
        await asyncio.sleep(max(1.0, 6 * PROBE_INTERVAL_S))
        await asyncio.to_thread(world.procs.stop, Role.PRIMARY)
        await asyncio.sleep(_restore_s(options) / 2)
        world.procs.start(Role.PRIMARY)
        await asyncio.to_thread(world.procs.wait_ready, Role.PRIMARY, 60.0, "/healthz")
        await store.fence_handover(options.city, Role.BACKUP, 0, lease_ms)
        notes["restored_at_s"] = options.fault_at_s + _restore_s(options) / 2
    finally:
        await store.close()


FAULTS: dict[str, Fault] = {
    "kill-primary": _kill_primary,
    "kill-redis-master": _kill_redis_master,
    "pause-redis-master": _pause_redis_master,
    "planned-failover": _planned_failover,
}


async def _generate(load: _Load, count: int, shard_of: Callable[[str], int]) -> list[_Subject]:
    subjects = []
    for seq in range(count):
        birth = date(1970, 1, 1) + timedelta(days=seq)
        identifier = make_resident_id("320102", birth, 1 + seq % 900)
        body = {"kind": "person", "id": identifier, "city": load.city}
        answer = await load.issuer.request(
            "POST",
            "/v1/subjects",
            json_body=body,
            headers=load.headers["generate"],
            idempotent=True,  # generate is idempotent by identifier
        )
        if answer.status not in (200, 201):
            raise RuntimeError(f"generate failed: {answer.status} {answer.reason}")
        document = answer.json()
        subject = SubjectId(document["subject"])
        subjects.append(_Subject(subject, shard_of(subject), int(document["version"])))
    unique = {s.subject: s for s in subjects}
    return list(unique.values())


async def _wait_for_primary(world: DrillWorld, options: DrillOptions) -> None:
    """Wait (up to 30 s) until the city's writes are back on its primary (the switch log
    then holds the hand-back, which the report times)."""
    store = world.store()
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                lease, _ = await store.fence_state(options.city)
                if lease.owner is Role.PRIMARY:
                    return
            await asyncio.sleep(0.1)
    finally:
        await store.close()


async def _patiently(call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """A store read after the fault, retried for up to 10 s while the cluster settles."""
    for _ in range(49):
        try:
            return await call()
        except StoreUnavailable:
            await asyncio.sleep(0.2)
    return await call()


async def _check_store(
    world: DrillWorld, load: _Load, subjects: list[_Subject]
) -> tuple[dict[str, Any], list[Switch]]:
    """Lost changes and fencing, read back from the store after the drill."""
    # The cluster may still be failing over when the load stops: wait until it is whole.
    await asyncio.to_thread(world.cluster.wait_healthy)
    store = world.store()
    try:
        trails = {}
        missing = 0
        for s in subjects:
            subject = s.subject
            missing += await _patiently(functools.partial(store.get_subject, subject)) is None
            trails[subject] = await _patiently(
                functools.partial(store.audit_trail_timed, subject, 100_000)
            )
        _, switches = await _patiently(lambda: store.fence_state(world.city.code, 200))
    finally:
        await store.close()
    applied = {(subject, e.op_id) for subject, trail in trails.items() for _ms, e in trail}
    lost = [(s, op) for s, op, _v in load.acked if (s, op) not in applied]
    regressions = 0
    for trail in trails.values():
        epochs = [e.epoch for _ms, e in trail if e.epoch]
        regressions += sum(1 for a, b in itertools.pairwise(epochs) if b < a)
    return {
        "acknowledged_changes": len(load.acked),
        "lost_changes": len(lost),
        "lost_examples": [op for _s, op in lost[:5]],
        "epoch_regressions": regressions,
        "subjects_lost": missing,
        "trails": trails,
    }, switches


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summarise(
    name: str,
    options: DrillOptions,
    load: _Load,
    checks: dict[str, Any],
    switches: list[Switch],
    notes: dict[str, Any],
    started_wall: float,
) -> dict[str, Any]:
    requests = load.requests
    fault = options.fault_at_s
    failed = [r for r in requests if not r.ok]
    by_outcome = Counter(r.outcome for r in failed)
    affected = int(notes.get("target_shard", -1))
    latencies = {
        op: [r.latency for r in requests if r.op == op] for op in sorted({r.op for r in requests})
    }
    summary: dict[str, Any] = {
        "drill": name,
        "city": options.city,
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(options).items()
        },
        "fault": notes.get("fault", ""),
        "lease_shard_hit": notes.get("target_shard", -1) == notes.get("lease_shard", -2),
        "requests": len(requests),
        "requests_not_sent": load.starved,
        "failed": len(failed),
        "failed_fraction": len(failed) / len(requests) if requests else 0.0,
        "failures_by_outcome": dict(by_outcome),
        "all_failures_503_with_reason": all(
            o.startswith("503 ") and len(o) > 4 for o in by_outcome
        ),
        "attempts_refused": {
            f"{role} {what}": n
            for client in (load.issuer, load.verifier)
            for (role, what), n in client.attempt_log.items()
            if not what.startswith(("200", "201"))
        },
        "attempts_unanswered": sum(
            n
            for client in (load.issuer, load.verifier)
            for (_role, what), n in client.attempt_log.items()
            if what == "no answer"
        ),
        "attempt_timeout_s": ATTEMPT_TIMEOUT_S,
        "latency_s": {
            op: {"p50": _percentile(v, 0.5), "p99": _percentile(v, 0.99), "max": max(v)}
            for op, v in latencies.items()
        },
        "p99_s": _percentile([r.latency for r in requests], 0.99),
        "max_latency_s": max((r.latency for r in requests), default=0.0),
        "over_deadline": sum(1 for r in requests if r.latency > options.budget_s + 0.25),
        "acknowledged_changes": checks["acknowledged_changes"],
        "lost_changes": checks["lost_changes"],
        "lost_examples": checks["lost_examples"],
        "epoch_regressions": checks["epoch_regressions"],
        "subjects_lost": checks["subjects_lost"],
        "lease_switches": [
            {
                "at_s": round(s.at - started_wall, 3),
                "from": s.source.value if s.source else None,
                "to": s.to.value,
                "epoch": s.epoch,
                "why": s.why,
            }
            for s in reversed(switches)
        ],
    }
    # Which endpoint served after the fault, and how soon.
    after = [r for r in requests if r.at >= fault]
    first_backup = next((r.at for r in after if r.ok and r.endpoint == "backup"), None)
    summary["first_served_by_backup_s"] = None if first_backup is None else first_backup - fault
    takeover = next(
        (s for s in reversed(switches) if s.to is Role.BACKUP and s.at - started_wall >= fault - 1),
        None,
    )
    summary["lease_to_backup_s"] = None if takeover is None else takeover.at - started_wall - fault
    # Writes with an epoch older than the backup's, stored (by the store's clock, to the ms)
    # after the backup took the lease. Nothing to count without a takeover: then None, and
    # a drill whose goal it is fails.
    summary["old_epoch_writes_after_switch"] = (
        None
        if takeover is None
        else sum(
            1
            for trail in checks["trails"].values()
            for stored_ms, e in trail
            if e.epoch and e.epoch < takeover.epoch and stored_ms > takeover.at * 1000
        )
    )
    restored = notes.get("restored_at_s")
    handback = next(
        (
            x
            for x in reversed(switches)
            if x.to is Role.PRIMARY and restored is not None and x.at - started_wall >= restored
        ),
        None,
    )
    summary["back_on_primary_after_restore_s"] = (
        None if handback is None or restored is None else handback.at - started_wall - restored
    )
    # The shard the fault hit, and the others.
    if affected >= 0:
        hit = [r for r in after if r.shard == affected]
        last_failure = max((r.at for r in hit if not r.ok), default=None)
        summary["affected_shard"] = notes.get("target_master")
        summary["affected_shard_recovery_s"] = 0.0 if last_failure is None else last_failure - fault
        window = min(10.0, fault)
        before = [
            r for r in requests if fault - window <= r.at < fault and r.shard != affected and r.ok
        ]
        during = [
            r for r in requests if fault <= r.at < fault + window and r.shard != affected and r.ok
        ]
        summary["unaffected_throughput_ratio"] = len(during) / len(before) if before else 0.0
    summary["goals"] = _goals(name, summary, options)
    summary["passed"] = all(g["passed"] for g in summary["goals"])
    return summary


def goal(name: str, value: Any, target: str, passed: bool) -> dict[str, Any]:
    """One goal of a drill's report: what was measured, against what, and whether it held."""
    shown = round(value, 3) if isinstance(value, float) else value
    return {"goal": name, "value": shown, "target": target, "passed": bool(passed)}


def goals_table(goals: Sequence[dict[str, Any]]) -> list[str]:
    """The Markdown table of a drill report's goals."""
    lines = ["| goal | value | target | result |", "|---|---|---|---|"]
    for g in goals:
        lines.append(
            f"| {g['goal']} | {g['value']} | {g['target']} | {'pass' if g['passed'] else 'FAIL'} |"
        )
    return lines


def _goals(name: str, s: dict[str, Any], options: DrillOptions) -> list[dict[str, Any]]:
    goals = [
        goal("acknowledged status changes lost", s["lost_changes"], "0", s["lost_changes"] == 0)
    ]
    goals.append(goal("subjects lost", s["subjects_lost"], "0", s["subjects_lost"] == 0))
    goals.append(
        goal(
            "epoch regressions in audit trails",
            s["epoch_regressions"],
            "0",
            s["epoch_regressions"] == 0,
        )
    )
    if name == "kill-primary":
        served = s["first_served_by_backup_s"]
        goals.append(
            goal(
                "served by the backup after", served, "<= 3 s", served is not None and served <= 3.0
            )
        )
        lease_s = s["lease_to_backup_s"]
        goals.append(
            goal(
                "writes moved to the backup after",
                lease_s,
                "<= 3 s",
                lease_s is not None and lease_s <= 3.0,
            )
        )
        goals.append(
            goal(
                "writes of the old primary's epoch after the switch",
                s["old_epoch_writes_after_switch"],
                "0",
                s["old_epoch_writes_after_switch"] == 0,
            )
        )
    elif name == "kill-redis-master":
        goals.append(
            goal(
                "requests failed",
                round(s["failed_fraction"], 5),
                "<= 0.005",
                s["failed_fraction"] <= 0.005,
            )
        )
        goals.append(
            goal(
                "every failure a 503 with a reason",
                s["all_failures_503_with_reason"],
                "true",
                s["all_failures_503_with_reason"],
            )
        )
        goals.append(
            goal(
                "affected shard recovered after",
                s.get("affected_shard_recovery_s"),
                "<= 5 s",
                (s.get("affected_shard_recovery_s") or 0) <= 5.0,
            )
        )
        goals.append(
            goal(
                "throughput of unaffected shards",
                round(s.get("unaffected_throughput_ratio", 0), 3),
                ">= 0.5",
                s.get("unaffected_throughput_ratio", 0) >= 0.5,
            )
        )
    elif name == "planned-failover":
        goals.append(goal("requests failed", s["failed"], "0", s["failed"] == 0))
    elif name == "pause-redis-master":
        goals.append(
            goal(
                "requests over their deadline",
                s["over_deadline"],
                f"0 (deadline {options.budget_s:g} s)",
                s["over_deadline"] == 0,
            )
        )
    return goals


def render_markdown(summary: dict[str, Any]) -> str:
    """The readable report."""
    verdict = "PASS" if summary["passed"] else "FAIL"
    lines = [
        f"# Drill `{summary['drill']}` — city {summary['city']}: {verdict}",
        "",
        f"Fault: {summary['fault']} at {summary['options']['fault_at_s']:g} s of "
        f"{summary['options']['duration_s']:g} s, load {summary['options']['rate']:g} req/s.",
        "",
        *goals_table(summary["goals"]),
    ]
    lines += [
        "",
        f"Requests: {summary['requests']}, failed {summary['failed']} "
        f"({summary['failed_fraction']:.3%}); acknowledged status changes "
        f"{summary['acknowledged_changes']}, lost {summary['lost_changes']}.",
        f"Latency p99 {summary['p99_s'] * 1000:.0f} ms, "
        f"max {summary['max_latency_s'] * 1000:.0f} ms.",
        "",
        "Failures as the app saw them: "
        + (json.dumps(summary["failures_by_outcome"], ensure_ascii=False) or "none"),
        "",
        "Attempts refused or unanswered (before failover and retries): "
        + json.dumps(summary["attempts_refused"], ensure_ascii=False),
        "",
        f"Attempts with no answer within {summary['attempt_timeout_s']:g} s (each then resent "
        f"within the request's deadline): {summary['attempts_unanswered']}.",
        "",
        "Write-lease switches: "
        + (
            ", ".join(
                f"{s['at_s']:.1f} s {s['from']}→{s['to']} (epoch {s['epoch']}, {s['why']})"
                for s in summary["lease_switches"]
            )
            or "none"
        ),
        "",
    ]
    return "\n".join(lines)


async def _run(name: str, options: DrillOptions, world: DrillWorld) -> dict[str, Any]:
    headers = await asyncio.to_thread(world.start)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        def breaker() -> Breaker:
            return Breaker(failures_to_open=3, open_for_s=1.0, successes_to_close=3)

        clients = [
            FailoverClient(
                world.city,
                service,
                session,
                budget_s=options.budget_s,
                attempt_timeout_s=min(ATTEMPT_TIMEOUT_S, options.budget_s),
                probe_interval_s=PROBE_INTERVAL_S,
                breaker=breaker,
            )
            for service in ("issuer", "verifier")
        ]
        for client in clients:
            client.start()
        fast = FastCluster(
            parse_nodes(world.cluster.nodes_spec), security=world.cluster.client_security()
        )
        await fast.start()
        masters = sorted(
            {addr for addr in (fast.primary_for(k) for k in (str(i) for i in range(2000))) if addr}
        )
        shard_index = {addr: i for i, addr in enumerate(masters)}

        def shard_of(subject: str) -> int:
            addr = fast.primary_for(keyspace.subject_key(SubjectId(subject)))
            return shard_index.get(addr, -1) if addr else -1

        load = _Load(clients[0], clients[1], headers, options.city, time.monotonic())
        subjects = await _generate(load, options.subjects, shard_of)
        lease_addr = fast.primary_for(keyspace.fence_keys(options.city)[0])
        lease_shard = shard_index.get(lease_addr, -1) if lease_addr else -1
        await fast.aclose()
        notes: dict[str, Any] = {"target_shard": -1, "lease_shard": lease_shard}
        if "redis" in name:
            # Chosen on purpose: a data shard by default, or the one holding the city's write
            # lease (whose loss moves every write of the city to the backup).
            wanted = [
                s for s in subjects if (s.shard == lease_shard) == (options.target == "lease")
            ]
            if not wanted:
                raise RuntimeError(f"no subject lives on a {options.target} shard; add subjects")
            notes["target_shard"] = wanted[0].shard
            notes["target_master"] = masters[wanted[0].shard][1]
        load.requests.clear()
        started_wall = time.time()
        load.started = time.monotonic()
        driver = asyncio.create_task(load.drive(random.Random(7), subjects, options.rate))
        await asyncio.sleep(options.fault_at_s)
        fault = asyncio.create_task(FAULTS[name](world, options, notes))
        await asyncio.sleep(options.duration_s - options.fault_at_s)
        load.stop = True
        await driver
        await fault
        for client in clients:
            await client.stop()
    if name in ("kill-primary", "planned-failover"):
        await _wait_for_primary(world, options)
    checks, switches = await _check_store(world, load, subjects)
    return _summarise(name, options, load, checks, switches, notes, started_wall)


def run_drill(name: str, options: DrillOptions) -> tuple[dict[str, Any], Path]:
    """Run the drill ``name``; its summary and the path of its JSON report (Markdown beside)."""
    if name not in FAULTS:
        raise ValueError(f"unknown drill {name!r}; one of {', '.join(DRILLS)}")
    if options.restore_after_s is None:
        options = dataclasses.replace(options, restore_after_s=RESTORE_AFTER_S[name])
    if options.fault_at_s >= options.duration_s:
        raise ValueError("the fault must come before the end of the drill")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    options.out_dir.mkdir(parents=True, exist_ok=True)
    work = options.work_dir or Path(tempfile.mkdtemp(prefix=f"{name}-", dir=options.out_dir))
    world = DrillWorld(options.city, work)
    try:
        summary = asyncio.run(_run(name, options, world))
    finally:
        world.stop()
    report = options.out_dir / f"{name}-{stamp}.json"
    report.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    report.with_suffix(".md").write_text(render_markdown(summary))
    return summary, report
