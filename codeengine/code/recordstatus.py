"""The records service's status as the ops console reads it: a small Redis hash, both ways.

The records service publishes a compact status every :data:`PUBLISH_EVERY_S` seconds
(:mod:`codeengine.records.status`) to ``keyspace.RECORDS_STATUS_KEY``; the issuer reads it back
for the ops console (``GET /v1/ops/records``). The records service cannot be reached by the
issuer directly (a different process, maybe a different host), and the hash outlives it: a status
that stopped coming is shown with its age, and called stale past :data:`STALE_AFTER_S`.

Every field is text (a number, or JSON for the lists); nothing in it names a person, a venue or a
terminal: tables, days, cities and counts.

Pure: no I/O.
"""

from __future__ import annotations

__all__ = ["PUBLISH_EVERY_S", "STALE_AFTER_S", "read_status_fields", "status_fields"]

import json
from collections.abc import Mapping
from typing import Any

PUBLISH_EVERY_S = 10.0
STALE_AFTER_S = 3 * PUBLISH_EVERY_S
"""A status older than three publishing periods means the records service is not publishing."""
_INTEGERS = ("published_at", "retention_days", "store_bytes", "rows", "lag_entries")
_LISTS = ("tables", "days", "lag")


def status_fields(status: Mapping[str, Any]) -> dict[str, str]:
    """The hash fields of a status document (``GET /v1/records/status``): its totals, and per
    table its rows, per day its rows, per stream its lag (the lists as JSON)."""
    tables = status["tables"]
    days: dict[str, dict[str, int]] = {}
    for name, table in tables.items():
        for day in table["days"]:
            days.setdefault(day["day"], {})[name] = day["rows"]
    return {
        "published_at": str(status["at"]),
        "retention_days": str(status["retention_days"]),
        "oldest_day": status["oldest_day"] or "",
        "store_bytes": str(status["store_bytes"]),
        "rows": str(status["rows"]),
        "lag_entries": str(status["lag_entries"]),
        "lag_oldest_s": f"{status['lag_oldest_s']:.3f}",
        "tables": json.dumps(
            [[name, t["rows"], t["bytes"]] for name, t in tables.items()], separators=(",", ":")
        ),
        "days": json.dumps([[day, days[day]] for day in sorted(days)], separators=(",", ":")),
        "lag": json.dumps(
            [[s["feed"], s["city"], s["entries"], s["oldest_age_s"]] for s in status["lag"]],
            separators=(",", ":"),
        ),
    }


def read_status_fields(fields: Mapping[str, str], now_ms: int) -> dict[str, Any]:
    """The published hash as the ops console shows it, with its age at ``now_ms`` and whether
    that makes it stale. ValueError if a field is missing or not what :func:`status_fields`
    writes."""
    try:
        out: dict[str, Any] = {name: int(fields[name]) for name in _INTEGERS}
        out["lag_oldest_s"] = float(fields["lag_oldest_s"])
        out["oldest_day"] = fields["oldest_day"] or None
        lists = {name: json.loads(fields[name]) for name in _LISTS}
        out["tables"] = [{"table": t, "rows": r, "bytes": b} for t, r, b in lists["tables"]]
        out["days"] = [{"day": day, "rows": dict(rows)} for day, rows in lists["days"]]
        out["lag"] = [
            {"feed": f, "city": c, "entries": e, "oldest_age_s": a} for f, c, e, a in lists["lag"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the records status hash is not readable: {exc!r}") from None
    age_s = max(0.0, (now_ms - out["published_at"]) / 1000)
    out["age_s"] = round(age_s, 3)
    out["stale"] = age_s > STALE_AFTER_S
    return out
