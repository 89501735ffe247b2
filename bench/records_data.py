"""The records benchmark's 28 days of scans, generated inside the engine: no Python per row.

Each day is one ``INSERT INTO scans SELECT .. FROM numbers(first, count)``; every random draw
is a hash of the row number (``sipHash64(number, k)``), so the same ``--rows`` gives the same
data on every machine, and the queries the benchmark picks from it are the same too.

What the data looks like, and why:

* cities by residents (``configs/cities/``): Suzhou has 15 % of the scans;
* ``VENUES_PER_MILLION`` venues per million residents (16,000 to 64,000 a city), popularity
  skewed as a power of a uniform draw (venue = ``floor(V * u^VENUE_SKEW)``): the busiest venue
  of a city takes ``V^(-1/3)`` of its scans (a metro station), the median one a few a day;
* busier venues have more terminals (16 at the top, 1 at the long tail);
* ``SUBJECTS_PER_MILLION`` subjects per million residents (4.2 million in all), each scanned
  in the city of residence, a few scanning far more than most (``floor(S * u^SUBJECT_SKEW)``);
  a subject is 16 URL-safe base64 characters, as a pseudonym is;
* 85 % of scans between 07:00 and 22:00, the rest any time of the day;
* results: 95.5 % VALID green, 2 % VALID yellow, 0.5 % VALID red, then EXPIRED, REVOKED,
  BAD_SIGNATURE and MALFORMED (no colour), as the verifiers log them.

Pure: it writes SQL and reads the city table; the benchmark runs it.
"""

from __future__ import annotations

__all__ = [
    "DAYS",
    "FIRST_DAY_MS",
    "CityShape",
    "city_shapes",
    "describe",
    "insert_day",
    "venue_name",
]

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from codeengine.code.cities import load_cities

DAYS = 28
FIRST_DAY_MS = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
DAY_MS = 86_400_000
VENUES_PER_MILLION = 5_000
SUBJECTS_PER_MILLION = 50_000
VENUE_SKEW = 3.0
SUBJECT_SKEW = 1.5
RESULTS = (
    # (cumulative share, reason, colour)
    (0.955, "VALID", "green"),
    (0.975, "VALID", "yellow"),
    (0.980, "VALID", "red"),
    (0.990, "EXPIRED", ""),
    (0.995, "REVOKED", ""),
    (0.998, "BAD_SIGNATURE", ""),
    (1.000, "MALFORMED", ""),
)


@dataclass(frozen=True, slots=True)
class CityShape:
    """A city's part of the data: its code, share of scans, venues and subjects."""

    code: int
    share: float
    venues: int
    subjects: int


def city_shapes() -> list[CityShape]:
    """The 13 cities, by code."""
    cities = load_cities()
    total = sum(c.residents_millions for c in cities.values())
    return [
        CityShape(
            int(code),
            city.residents_millions / total,
            round(city.residents_millions * VENUES_PER_MILLION),
            round(city.residents_millions * SUBJECTS_PER_MILLION),
        )
        for code, city in sorted(cities.items())
    ]


def venue_name(city: int, index: int) -> str:
    """The venue of ``index`` (0: the busiest) in ``city``, as the generator names it."""
    return f"V{city}-{index:06d}"


def _array(values: list[Any]) -> str:
    return "[" + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values) + "]"


def _uniform(k: int) -> str:
    """A uniform draw in [0, 1) from the row number, independent for each ``k``."""
    return f"(sipHash64(number, {k}) / 18446744073709551616.0)"


def insert_day(database: str, day: int, rows: int) -> str:
    """The statement that generates day ``day`` (0-based) of ``rows`` scans over ``DAYS``."""
    per_day = rows // DAYS
    first = day * per_day
    count = per_day if day < DAYS - 1 else rows - first
    shapes = city_shapes()
    cumulative = list(accumulate(s.share for s in shapes))
    cumulative[-1] = 1.000001  # a draw just under 1 still finds a city
    results = "multiIf(" + ", ".join(
        f"u_result < {share}, ({reason!r}, {colour!r})" for share, reason, colour in RESULTS[:-1]
    ) + f", ({RESULTS[-1][1]!r}, {RESULTS[-1][2]!r}))"  # fmt: skip
    return f"""
INSERT INTO {database}.scans (terminal, venue, city, at, subject, reason, colour)
SELECT
    concat('T', toString(city), '-', leftPad(toString(v), 6, '0'), '-', toString(t)),
    concat('V', toString(city), '-', leftPad(toString(v), 6, '0')),
    city,
    fromUnixTimestamp64Milli(toInt64({FIRST_DAY_MS + day * DAY_MS} + offset_ms), 'UTC'),
    base64URLEncode(substring(reinterpretAsString(sipHash128(city, s)), 1, 12)),
    result.1,
    result.2
FROM (
    SELECT
        number,
        arrayFirstIndex(x -> x > {_uniform(1)}, {_array(cumulative)}) AS i,
        {_array([s.code for s in shapes])}[i] AS city,
        toUInt32(least({_array([s.venues for s in shapes])}[i] - 1,
            floor({_array([s.venues for s in shapes])}[i] * pow({_uniform(2)}, {VENUE_SKEW}))))
            AS v,
        sipHash64(number, 3) % greatest(1, 16 - 3 * toUInt32(log10(v + 1))) AS t,
        toUInt32(floor({_array([s.subjects for s in shapes])}[i]
            * pow({_uniform(4)}, {SUBJECT_SKEW}))) AS s,
        if({_uniform(5)} < 0.85, 25200000 + {_uniform(6)} * 54000000,
            {_uniform(6)} * 86400000) AS offset_ms,
        {_uniform(7)} AS u_result,
        {results} AS result
    FROM numbers({first}, {count})
)"""


def describe(rows: int) -> dict[str, Any]:
    """The generator's parameters, for the results file."""
    shapes = city_shapes()
    return {
        "days": DAYS,
        "first_day": datetime.fromtimestamp(FIRST_DAY_MS / 1000, UTC).date().isoformat(),
        "rows_per_day": rows // DAYS,
        "venues": sum(s.venues for s in shapes),
        "venues_per_city": {str(s.code): s.venues for s in shapes},
        "subjects": sum(s.subjects for s in shapes),
        "venue_popularity": f"floor(V * u^{VENUE_SKEW})",
        "subject_activity": f"floor(S * u^{SUBJECT_SKEW})",
        "daytime_share": 0.85,
        "results": [[reason, colour, share] for share, reason, colour in RESULTS],
    }
