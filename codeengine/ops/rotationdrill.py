"""The suite-rotation drill: a staged rotation Ed25519 -> SM2 (and back) under load.

``codeengine drill rotate-suite --to SM2SM3 [--back]`` starts its own world on loopback (a 3+3
Redis Cluster, dev keys, one city's issuer and verifier as real processes, with the code
lifetimes of :class:`RotationDrillOptions`) and runs, all at once:

* the load: displays (亮码) of many subjects' codes, each code kept until it expires, and scans
  of the codes kept, online (``POST /v1/verify``) and offline (at a terminal);
* terminals: the offline SDK (``verifier.offline``) configured with the drill's trust anchor,
  each fetching ``/v1/trust/signed`` and ``/v1/revocations/signed`` every
  ``codes.trust_list_max_age_s``, the schedule the services publish, at phases spread over that
  period; and, at each rotation, one more whose first fetch is the moment the rotation is
  acknowledged (the worst phase: it then holds the list of that moment for a whole period);
* the rotation, staged as the service publishes it: ``POST /v1/keys/rotate`` with the target
  suite and the default activation; with ``back``, once the new key signs and every terminal
  has fetched a list since, the same again to the first suite. The old key is never removed by
  the drill: the keyring keeps it until the codes it signed have expired.

A *refused valid code* is a code the issuer displayed that the verifier or a terminal refused
while the code was within its validity (``issued_at <= t <= expires_at`` when the scan was
made). A terminal scans only while it is on its schedule (it sent a fetch less than a period
ago): a terminal the drill's own loop let fall behind is not the service's failure, and such
scans are counted apart. The drill waits for events (a code of the new key displayed, every
terminal having fetched since the switch, the last code of a replaced key having expired), not
for fixed times. It writes ``rotate-suite-TIME.json`` and ``.md`` beside the other drills'.
"""

from __future__ import annotations

__all__ = ["ROTATE_DRILL", "RotationDrillOptions", "run_rotation_drill"]

import asyncio
import dataclasses
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from codeengine.code.errors import ListRefused
from codeengine.code.fencing import Role
from codeengine.code.identifiers import make_resident_id
from codeengine.code.registry import DEFAULT_SUITES
from codeengine.code.suites import b64url_encode
from codeengine.code.token import decode
from codeengine.keyfiles import anchor_public_path
from codeengine.ops.drill import DrillWorld, Pacer
from codeengine.ops.rotationreport import FIRST_SUITE, render_markdown, rotation_goals
from verifier.offline import CachedList, OfflineVerifier, load_anchors

ROTATE_DRILL = "rotate-suite"
IN_FLIGHT_MAX = 64
"""Requests the load keeps in flight at most; past it a tick sends nothing (counted)."""
EVENT_TIMEOUT_S = 120.0
"""The longest wait for one of the drill's events: a bound on a failure, never an ordering."""
_STEPS = (("display", 0.4), ("online", 0.3), ("offline", 0.3))


@dataclass(frozen=True)
class RotationDrillOptions:
    """Where, how hard and with which lifetimes the drill runs."""

    to: str = "SM2SM3"
    """The suite rotated to (a JOSE ``alg``: ``SM2SM3``, ``ES256``, ``EdDSA``)."""
    back: bool = False
    """Rotate back to the first suite (Ed25519) once the new key signs."""
    city: int = 320100
    rate: float = 200.0
    """Requests a second the load aims at: displays, online and offline scans together."""
    subjects: int = 200
    terminals: int = 4
    """Terminals on the published schedule, at phases spread over the refresh period."""
    display_ttl_s: int = 120
    trust_list_max_age_s: int = 300
    """The published refresh period of a terminal, and the default activation delay."""
    signed_list_ttl_s: int = 86_400
    activate_in_s: int | None = None
    """The rotation's ``activate_in_s``; None: the service's default (staged as published).
    0 rehearses an emergency rotation, which terminals are not expected to survive."""
    out_dir: Path = Path("var/drills")
    work_dir: Path | None = None


def _suite_name(alg: int) -> str:
    suite = DEFAULT_SUITES.by_cose_alg(alg)
    return "?" if suite is None else suite.jose_alg


@dataclass
class _Shown:
    """A code the issuer handed out, kept to be scanned until it expires."""

    token: str
    kid: str
    suite: str
    iat: int
    exp: int


@dataclass
class _KeySeen:
    """What the load saw of one signing key: when it first and last signed, and until when."""

    suite: str
    first_s: float
    last_s: float
    last_exp: int
    displayed: int = 0


@dataclass
class _Terminal:
    """One offline terminal: its SDK and its fetches.

    On its schedule means it sent a fetch less than a period ago: while that fetch is under
    way it still holds, and scans with, the list before, as a real terminal does.
    """

    name: str
    first_at: float
    sdk: OfflineVerifier | None = None
    last_sent: float = 0.0
    """When it last sent a fetch, answered yet or not."""
    fetches: int = 0
    held: list[tuple[float, float, frozenset[str]]] = field(default_factory=list)
    """Each list it took: when its fetch was sent, when it was taken, the key ids in it."""

    def kids_at(self, t: float, period_s: int) -> frozenset[str] | None:
        """The key ids it held at ``t``, if it was on its schedule then (None otherwise)."""
        kids, sent = None, 0.0
        for fetch_sent, taken, held in self.held:
            if fetch_sent <= t:
                sent = fetch_sent
            if taken <= t:
                kids = held
        return kids if t - sent <= period_s else None

    def taken_since(self, t: float) -> bool:
        """Whether it holds a list whose fetch was sent at ``t`` or later."""
        return bool(self.held) and self.held[-1][0] >= t

    def on_schedule(self, now: float, period_s: int) -> bool:
        """Whether it holds a list and sent a fetch less than a period ago."""
        return self.sdk is not None and now - self.last_sent <= period_s


@dataclass
class _Tally:
    """Everything the drill counts."""

    started: float
    displayed: Counter[str] = field(default_factory=Counter)
    online: Counter[tuple[str, str]] = field(default_factory=Counter)
    offline: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused_valid: list[dict[str, Any]] = field(default_factory=list)
    refused_outside_validity: int = 0
    old_after_switch: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    not_sent: int = 0
    offline_skipped: int = 0
    fetch_failures: Counter[str] = field(default_factory=Counter)
    keys: dict[str, _KeySeen] = field(default_factory=dict)
    rotations: list[dict[str, Any]] = field(default_factory=list)

    def rel(self, t: float) -> float:
        return round(t - self.started, 3)


class _Drill:
    """The running drill: its HTTP session, subjects, terminals, tally and events."""

    def __init__(
        self,
        options: RotationDrillOptions,
        session: aiohttp.ClientSession,
        headers: dict[str, dict[str, str]],
        issuer: str,
        verifier: str,
        anchors_document: bytes,
    ) -> None:
        self.options = options
        self.session = session
        self.headers = headers
        self.issuer = issuer
        self.verifier = verifier
        self.anchors = load_anchors([anchors_document])
        self.tally = _Tally(time.time())
        self.shown: dict[str, list[_Shown]] = {}
        self.terminals: list[_Terminal] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()
        """Set whenever a terminal fetched or a code of a new key was displayed."""
        self.stop = False

    # The terminals -------------------------------------------------------------------------

    def add_terminal(self, name: str, first_at: float) -> None:
        terminal = _Terminal(name, first_at)
        self.terminals.append(terminal)
        self.tasks.append(asyncio.create_task(self._keep_fetching(terminal)))

    async def _get(self, path: str) -> bytes:
        async with self.session.get(self.verifier + path) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=path
                )
            return await response.read()

    async def _keep_fetching(self, terminal: _Terminal) -> None:
        """Fetch the signed lists at ``first_at``, then a period after each fetch was sent."""
        period = self.options.trust_list_max_age_s
        next_at = terminal.first_at
        while not self.stop:
            await asyncio.sleep(max(0.0, next_at - time.time()))
            sent = terminal.last_sent = time.time()
            try:
                trust, revocations = await asyncio.gather(
                    self._get("/v1/trust/signed"), self._get("/v1/revocations/signed")
                )
                if terminal.sdk is None:
                    cached = CachedList.from_signed(trust, revocations, self.anchors, int(sent))
                    terminal.sdk = OfflineVerifier(cached, anchors=self.anchors)
                else:
                    terminal.sdk.refresh(trust, revocations)
            except ListRefused as exc:
                self.tally.fetch_failures[f"refused {exc.reason.value}"] += 1
                next_at = time.time() + 0.2
                continue
            except aiohttp.ClientResponseError as exc:
                self.tally.fetch_failures[f"no list ({exc.status})"] += 1
                next_at = time.time() + 0.2
                continue
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.tally.fetch_failures[f"no list ({type(exc).__name__})"] += 1
                next_at = time.time() + 0.2
                continue
            terminal.fetches += 1
            kids = frozenset(b64url_encode(key.kid) for key in terminal.sdk.cached.trust)
            terminal.held.append((sent, time.time(), kids))
            next_at = sent + period
            self.changed.set()

    # The load ------------------------------------------------------------------------------

    async def generate(self) -> list[str]:
        subjects = []
        for seq in range(self.options.subjects):
            birth = date(1970, 1, 1) + timedelta(days=seq)
            body = {
                "kind": "person",
                "id": make_resident_id("320102", birth, 1 + seq % 900),
                "city": self.options.city,
            }
            async with self.session.post(
                self.issuer + "/v1/subjects", json=body, headers=self.headers["generate"]
            ) as response:
                if response.status not in (200, 201):
                    raise RuntimeError(f"generate failed: {response.status}")
                subjects.append(str((await response.json())["subject"]))
        return subjects

    async def display(self, subject: str) -> None:
        path = f"{self.issuer}/v1/subjects/{subject}/code"
        async with self.session.get(path, headers=self.headers["display"]) as response:
            if response.status != 200:
                self.tally.failed[f"display {response.status}"] += 1
                return
            document = await response.json()
        token = str(document["token"])
        decoded = decode(token)
        kid, suite = b64url_encode(decoded.kid), _suite_name(decoded.alg)
        shown = _Shown(token, kid, suite, int(document["issued_at"]), int(document["expires_at"]))
        kept = self.shown.setdefault(subject, [])
        if not any(s.token == token for s in kept):
            kept.append(shown)
        self.tally.displayed[suite] += 1
        now = time.time()
        seen = self.tally.keys.get(kid)
        if seen is None:
            seen = self.tally.keys[kid] = _KeySeen(suite, self.tally.rel(now), 0.0, 0)
            self.changed.set()
        seen.last_s, seen.last_exp = self.tally.rel(now), max(seen.last_exp, shown.exp)
        seen.displayed += 1

    def _pick(self, rng: random.Random, subject: str, now: float) -> _Shown | None:
        kept = [s for s in self.shown.get(subject, []) if s.exp >= now]
        self.shown[subject] = kept
        return rng.choice(kept) if kept else None

    def _refused(self, where: str, shown: _Shown, reason: str, at: float) -> None:
        if shown.iat <= int(at) <= shown.exp:
            self.tally.refused_valid.append(
                {
                    "where": where,
                    "reason": reason,
                    "suite": shown.suite,
                    "kid": shown.kid,
                    "at_s": self.tally.rel(at),
                    "issued_at_s": self.tally.rel(shown.iat),
                }
            )
        else:
            self.tally.refused_outside_validity += 1

    def _note_old(self, where: str, shown: _Shown, at: float) -> None:
        """Count scans of a replaced key's codes after the switch (the overlap at work)."""
        for rotation in self.tally.rotations:
            if rotation["from_kid"] == shown.kid and at >= rotation["activates_at"]:
                self.tally.old_after_switch[where] += 1

    async def verify_online(self, shown: _Shown) -> None:
        body = {"code": shown.token, "terminal": "drill-gate", "city": self.options.city}
        at = time.time()
        async with self.session.post(
            self.verifier + "/v1/verify", json=body, headers=self.headers["verify"]
        ) as response:
            if response.status != 200:
                self.tally.failed[f"verify {response.status}"] += 1
                return
            verdict = await response.json()
        self.tally.online[(shown.suite, str(verdict["reason"]))] += 1
        if verdict["valid"]:
            self._note_old("online", shown, at)
        else:
            self._refused("online", shown, str(verdict["reason"]), at)

    def verify_offline(self, rng: random.Random, shown: _Shown) -> None:
        now = time.time()
        period = self.options.trust_list_max_age_s
        ready = [t for t in self.terminals if t.on_schedule(now, period)]
        if not ready:
            self.tally.offline_skipped += 1
            return
        terminal = rng.choice(ready)
        assert terminal.sdk is not None
        verdict = terminal.sdk.verify(shown.token)
        self.tally.offline[(shown.suite, verdict.reason)] += 1
        if verdict.valid:
            self._note_old("offline", shown, now)
        else:
            self._refused(f"offline {terminal.name}", shown, verdict.reason, now)

    async def step(self, rng: random.Random, subject: str) -> None:
        roll, op = rng.random(), "display"
        for name, weight in _STEPS:
            if roll < weight:
                op = name
                break
            roll -= weight
        shown = None if op == "display" else self._pick(rng, subject, time.time())
        try:
            if shown is None:
                await self.display(subject)
            elif op == "online":
                await self.verify_online(shown)
            else:
                self.verify_offline(rng, shown)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.tally.failed[f"{op} no answer ({type(exc).__name__})"] += 1

    async def drive(self, subjects: list[str]) -> None:
        """Open loop: a request every 1/rate s, at most ``IN_FLIGHT_MAX`` in flight."""
        rng = random.Random(22)
        running: set[asyncio.Task[None]] = set()
        pacer = Pacer(self.options.rate)
        while not self.stop:
            if len(running) < IN_FLIGHT_MAX:
                task = asyncio.create_task(self.step(rng, rng.choice(subjects)))
                running.add(task)
                task.add_done_callback(running.discard)
            else:
                self.tally.not_sent += 1
            await pacer.next()
        if running:
            await asyncio.gather(*running)

    # The rotation --------------------------------------------------------------------------

    async def until(self, what: str, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, woken by the drill's events (and once a second,
        for the conditions that are a time passing)."""
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"rotation drill: {what} did not happen")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), 1.0)
            except TimeoutError:
                pass

    async def rotate(self, alg: str, index: int) -> dict[str, Any]:
        """Rotate to ``alg`` as an operator would, and follow it until every terminal has
        fetched a list since the new key started signing."""
        kids_before = set(self.tally.keys)
        from_kid = max(self.tally.keys.items(), key=lambda item: item[1].last_s)[0]
        asked = time.time()
        body: dict[str, Any] = {"alg": alg}
        if self.options.activate_in_s is not None:
            body["activate_in_s"] = self.options.activate_in_s
        async with self.session.post(
            self.issuer + "/v1/keys/rotate", json=body, headers=self.headers["admin"]
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"rotation to {alg} refused: {response.status}")
            answer = await response.json()
        acknowledged = time.time()
        # The worst phase: a terminal whose fetch meets the rotation's first moments.
        self.add_terminal(f"at-rotation-{index}", acknowledged)
        new_kid, activates_at = str(answer["kid"]), int(answer["activates_at"])
        rotation = {
            "to": alg,
            "from_kid": from_kid,
            "kid": new_kid,
            "activates_at": activates_at,
            "asked_at_s": self.tally.rel(asked),
            "acknowledged_at_s": self.tally.rel(acknowledged),
            "activates_at_s": self.tally.rel(activates_at),
        }
        self.tally.rotations.append(rotation)
        await self.until(f"a code of the {alg} key", lambda: new_kid in self.tally.keys)
        rotation["first_code_s"] = self.tally.keys[new_kid].first_s
        assert new_kid not in kids_before
        await self.until(
            "every terminal fetching since the switch",
            lambda: all(t.taken_since(activates_at) for t in self.terminals),
        )
        rotation["terminals_refreshed_s"] = self.tally.rel(time.time())
        # Whether each terminal that held a list at the switch knew the new key then: the
        # whole point of staging, checked whether or not a scan happened to meet the gap.
        period = self.options.trust_list_max_age_s
        held = [t.kids_at(activates_at, period) for t in self.terminals]
        rotation["terminals_at_switch"] = sum(1 for kids in held if kids is not None)
        rotation["terminals_without_key_at_switch"] = sum(
            1 for kids in held if kids is not None and new_kid not in kids
        )
        rotation["first_list_with_key_s"] = min(
            (self.tally.rel(taken) for t in self.terminals for _, taken, kids in t.held
             if new_kid in kids),
            default=None,
        )  # fmt: skip
        return rotation

    async def lists_served(self) -> None:
        """Wait until the verifier serves the signed lists: an issuer signs them once it is
        up, and the verifier reads them within ``codes.keyring_refresh_s``."""
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        while True:
            try:
                await asyncio.gather(
                    self._get("/v1/trust/signed"), self._get("/v1/revocations/signed")
                )
                return
            except aiohttp.ClientResponseError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        period = self.options.trust_list_max_age_s
        subjects = await self.generate()
        await self.lists_served()
        start = time.time()
        for i in range(self.options.terminals):
            self.add_terminal(f"schedule-{i}", start + i * period / self.options.terminals)
        driver = asyncio.create_task(self.drive(subjects))
        try:
            await self.until(
                "every terminal's first list and the first code",
                lambda: bool(self.tally.keys) and all(t.sdk for t in self.terminals),
            )
            await self.rotate(self.options.to, 1)
            if self.options.back:
                await self.rotate(FIRST_SUITE, 2)
            # Keep scanning until the last code of every replaced key has expired.
            replaced = [r["from_kid"] for r in self.tally.rotations]
            await self.until(
                "the replaced keys' codes expiring",
                lambda: time.time() > max(self.tally.keys[k].last_exp for k in replaced) + 1,
            )
        finally:
            self.stop = True
            await driver
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)


def _settings_env(options: RotationDrillOptions) -> dict[str, str]:
    return {
        "CODES_DISPLAY_TTL_S": str(options.display_ttl_s),
        "CODES_TRUST_LIST_MAX_AGE_S": str(options.trust_list_max_age_s),
        "CODES_SIGNED_LIST_TTL_S": str(options.signed_list_ttl_s),
    }


def _summarise(drill: _Drill, options: RotationDrillOptions) -> dict[str, Any]:
    tally = drill.tally
    online = sum(tally.online.values())
    offline = sum(tally.offline.values())
    refused_online = [r for r in tally.refused_valid if r["where"] == "online"]
    refused_offline = [r for r in tally.refused_valid if r["where"] != "online"]
    summary: dict[str, Any] = {
        "drill": ROTATE_DRILL,
        "city": options.city,
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(options).items()
        },
        "duration_s": tally.rel(time.time()),
        "displayed": sum(tally.displayed.values()),
        "displayed_by_suite": dict(tally.displayed),
        "verified_online": online,
        "verified_offline": offline,
        "online_by_suite_and_reason": {f"{s} {r}": n for (s, r), n in tally.online.items()},
        "offline_by_suite_and_reason": {f"{s} {r}": n for (s, r), n in tally.offline.items()},
        "refused_valid_online": len(refused_online),
        "refused_valid_offline": len(refused_offline),
        "refused_valid_examples": tally.refused_valid[:10],
        "refused_outside_validity": tally.refused_outside_validity,
        "old_codes_valid_after_switch": dict(tally.old_after_switch),
        "requests_failed": dict(tally.failed),
        "requests_not_sent": tally.not_sent,
        "offline_scans_skipped_terminal_behind": tally.offline_skipped,
        "terminals": [
            {"name": t.name, "fetches": t.fetches, "first_at_s": tally.rel(t.first_at)}
            for t in drill.terminals
        ],
        "list_fetch_failures": dict(tally.fetch_failures),
        "rotations": [{k: v for k, v in r.items() if k != "activates_at"} for r in tally.rotations],
        "keys": {
            kid: dataclasses.asdict(seen) | {"last_exp_s": tally.rel(seen.last_exp)}
            for kid, seen in tally.keys.items()
        },
    }
    summary["goals"] = rotation_goals(summary, options.to, options.back)
    summary["passed"] = all(g["passed"] for g in summary["goals"])
    return summary


async def _run(
    world: DrillWorld, headers: dict[str, dict[str, str]], options: RotationDrillOptions
) -> _Drill:
    anchors = anchor_public_path(Path(world.settings.keys.trust_anchor_file)).read_bytes()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        drill = _Drill(
            options,
            session,
            headers,
            world.procs.url("issuer", Role.PRIMARY),
            world.procs.url("verifier", Role.PRIMARY),
            anchors,
        )
        await drill.run()
    return drill


def run_rotation_drill(options: RotationDrillOptions) -> tuple[dict[str, Any], Path]:
    """Run the drill; its summary and the path of its JSON report (Markdown beside)."""
    if DEFAULT_SUITES.by_jose_alg(options.to) is None:
        raise ValueError(f"unknown suite {options.to!r}")
    if options.to == FIRST_SUITE:
        raise ValueError(f"the drill starts on {FIRST_SUITE}: rotate to another suite")
    if options.terminals < 1 or options.subjects < 1 or options.rate <= 0:
        raise ValueError("the drill needs a terminal, a subject and a positive rate")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    options.out_dir.mkdir(parents=True, exist_ok=True)
    work = options.work_dir or Path(
        tempfile.mkdtemp(prefix=f"{ROTATE_DRILL}-", dir=options.out_dir)
    )
    world = DrillWorld(options.city, work, _settings_env(options))
    try:
        # Started from this thread, never a worker thread: the kernel's parent-death signal,
        # which keeps no process alive past the drill, follows the thread that started it.
        headers = world.start((Role.PRIMARY,))
        drill = asyncio.run(_run(world, headers, options))
    finally:
        world.stop()
    summary = _summarise(drill, options)
    report = options.out_dir / f"{ROTATE_DRILL}-{stamp}.json"
    report.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    report.with_suffix(".md").write_text(render_markdown(summary))
    return summary, report
