"""The four questions against the loaded scans, each asked of different venues, subjects or
hours: the queries phase of ``python -m bench.records``.

Every repetition asks something new (a venue, subject, city or hour it has not asked), picked
with a seeded RNG from the generated data (:mod:`bench.records_data` names its venues and
subjects as the engine made them), and the engine's query-condition cache is off for the
session: a repeated identical query, or one whose conditions the cache knows, would be
answered from what an earlier one found and flatter the figure.
"""

from __future__ import annotations

__all__ = ["CONTACT_SUBJECTS", "GOALS_MS", "REPEATS", "measure"]

import argparse
import random
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from bench import records_data
from codeengine.records import queries
from codeengine.records.engine import RecordsEngine

REPEATS = 20
CONTACT_SUBJECTS = 5
HOUR_MS = 3_600_000
DAY_MS = records_data.DAY_MS
TRAJECTORY_DAYS = 14
CONTACT_WINDOW_S = 1800
PAGE = 10_000
"""Rows a query answers at most: the service's ``records.page_max``."""
BUSY_VENUES = 10
"""The busiest venues of each city: a popular venue is one of them."""
GOALS_MS = {"median": 200.0, "max": 1000.0, "contacts": 2000.0}

Summary = Callable[[Sequence[float]], dict[str, Any]]


def _subject(engine: RecordsEngine, city: int, index: int) -> str:
    """The pseudonym the generator gave subject ``index`` of ``city``."""
    rows = engine.rows(
        "SELECT base64URLEncode(substring(reinterpretAsString("
        "sipHash128({city:UInt32}, {index:UInt32})), 1, 12))",
        {"city": city, "index": index},
    )
    return str(rows[0][0])


def _timed(call: Callable[[], Sequence[object]]) -> tuple[float, int]:
    started = time.perf_counter()
    rows = call()
    return (time.perf_counter() - started) * 1000, len(rows)


def _distinct(rng: random.Random, draw: Callable[[], Any], count: int) -> list[Any]:
    picked: list[Any] = []
    while len(picked) < count:
        value = draw()
        if value not in picked:
            picked.append(value)
    return picked


def _hour(rng: random.Random) -> int:
    """The start of a daytime hour of one of the loaded days."""
    day = rng.randrange(records_data.DAYS)
    return records_data.FIRST_DAY_MS + day * DAY_MS + rng.randrange(8, 21) * HOUR_MS


def measure(engine: RecordsEngine, opts: argparse.Namespace, summary: Summary) -> dict[str, Any]:
    """Each question ``--queries`` times, each time about something else; times in ms."""
    # The bench's own reading session: the query-condition cache would answer a query from
    # the ranges an earlier one found.
    engine._reader.set_client_setting("use_query_condition_cache", 0)
    rng = random.Random(opts.seed)
    shapes = records_data.city_shapes()
    count = opts.queries
    results: dict[str, Any] = {}

    def record(name: str, timings: list[tuple[float, int]], goal_ms: float | None) -> None:
        ms = [t for t, _ in timings]
        entry = {**summary(ms), "max": max(ms), "rows": [n for _, n in timings]}
        if goal_ms is None:
            entry["goal"] = {**GOALS_MS, "met": entry["median"] < GOALS_MS["median"]
                             and entry["max"] < GOALS_MS["max"]}  # fmt: skip
        else:
            entry["goal"] = {"max": goal_ms, "met": entry["max"] < goal_ms}
        results[name] = entry
        print(f"{name}: median {entry['median']:.1f} ms, max {entry['max']:.1f} ms, "
              f"rows {min(entry['rows'])}..{max(entry['rows'])} over {len(ms)} queries",
              flush=True)  # fmt: skip

    def venue_hours(popular: bool) -> list[tuple[float, int]]:
        def draw() -> tuple[str, int]:
            shape = rng.choice(shapes)
            index = (
                rng.randrange(BUSY_VENUES)
                if popular
                else rng.randrange(shape.venues // 10, shape.venues)
            )
            return records_data.venue_name(shape.code, index), _hour(rng)

        return [
            _timed(partial(queries.venue_scans, engine, venue, hour, hour + HOUR_MS, PAGE))
            for venue, hour in _distinct(rng, draw, count)
        ]

    record("venue_hour_popular", venue_hours(popular=True), None)
    record("venue_hour_typical", venue_hours(popular=False), None)

    def trajectory() -> tuple[int, int, int]:
        shape = rng.choice(shapes)
        start = rng.randrange(records_data.DAYS - TRAJECTORY_DAYS + 1)
        return shape.code, rng.randrange(shape.subjects), start

    trajectories = []
    for city, index, start in _distinct(rng, trajectory, count):
        subject, first = _subject(engine, city, index), _day(start)
        last = first + TRAJECTORY_DAYS * DAY_MS
        trajectories.append(
            _timed(partial(queries.subject_scans, engine, subject, first, last, PAGE))
        )
    record("subject_14_days", trajectories, None)

    def city_day() -> tuple[int, int]:
        return rng.choice(shapes).code, rng.randrange(records_data.DAYS)

    per_minute = []
    for city, day in _distinct(rng, city_day, count):
        first = _day(day)
        per_minute.append(
            _timed(partial(queries.counts, engine, city, None, first, first + DAY_MS, 60))
        )
    record("city_day_per_minute", per_minute, None)

    # Contacts: the busiest subject of the largest city (the generator's subject 0 scans most),
    # then typical ones.
    largest = max(shapes, key=lambda s: s.subjects)
    subjects = [(largest.code, 0)] + [
        (shape.code, rng.randrange(shape.subjects))
        for shape in (rng.choice(shapes) for _ in range(max(0, opts.contacts - 1)))
    ]
    timings = []
    scans = []
    for city, index in subjects:
        subject = _subject(engine, city, index)
        start = _day(rng.randrange(records_data.DAYS - TRAJECTORY_DAYS + 1))
        end = start + TRAJECTORY_DAYS * DAY_MS
        timings.append(
            _timed(partial(queries.contacts, engine, subject, start, end, CONTACT_WINDOW_S, PAGE))
        )
        # Counted after the contacts, so that this query does not warm theirs.
        scans.append(len(queries.subject_scans(engine, subject, start, end, PAGE)))
    record("contacts_14_days", timings, GOALS_MS["contacts"])
    results["contacts_14_days"]["subject_scans"] = scans
    results["contacts_14_days"]["window_s"] = CONTACT_WINDOW_S
    results["contacts_14_days"]["busy_subject_ms"] = timings[0][0]
    results["page_rows"] = PAGE
    results["query_condition_cache"] = "off"
    results["all_goals_met"] = all(
        r["goal"]["met"] for r in results.values() if isinstance(r, dict) and "goal" in r
    )
    return results


def _day(day: int) -> int:
    return records_data.FIRST_DAY_MS + day * DAY_MS
