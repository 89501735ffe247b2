"""Appending packed entries to per-city log streams: the scan log and the change log.

Both logs are one stream per city, written in batches by a buffered writer
(codeengine.store.streamlog) through one script (``APPEND_LOG``), one call per city and batch,
each with the batch's token so that a resend writes nothing twice.
"""

from __future__ import annotations

__all__ = ["LogEntry", "append_by_city"]

import asyncio
from collections import defaultdict
from collections.abc import Callable

from codeengine.store.cluster import Script

LogEntry = tuple[int, bytes]
"""An entry as the writers hold it: its city, and the entry packed."""


async def append_by_city(
    script: Script,
    log_key: Callable[[int], str],
    marker_key: Callable[[int, str], str],
    entries: list[LogEntry],
    max_age_ms: int,
    token: str,
    deadline_s: float,
) -> list[LogEntry]:
    """Append every entry to its city's stream: one script call per city, pipelined.

    Returns the entries of the cities whose call failed; the others are written once. A
    city's script skips a batch whose ``token`` it has written already (a resend).
    """
    # Each city's script arguments, gathered as they are sent: the age limit, then the entries.
    by_city: defaultdict[int, list[int | bytes]] = defaultdict(lambda: [max_age_ms])
    for city, packed in entries:
        by_city[city].append(packed)
    outcomes = await asyncio.gather(
        *(
            script([log_key(city), marker_key(city, token)], args, deadline_s=deadline_s)
            for city, args in by_city.items()
        ),
        return_exceptions=True,
    )
    failed_cities = set()
    for city, outcome in zip(by_city, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            failed_cities.add(city)
    return [entry for entry in entries if entry[0] in failed_cities] if failed_cities else []
