"""The Grafana dashboard (deploy/grafana/codeengine.json): a layout Grafana accepts, and a row
for each part of the engine an operator watches, the records service's included.

Whether each metric it queries is one a live service exposes is an end-to-end check
(tests/e2e/test_verifier_e2e.py, tests/e2e/test_records_opskit.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "codeengine.json"


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return panels


def test_panels_have_their_own_ids_and_never_overlap() -> None:
    panels = _panels()
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} over {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_the_records_row_shows_lag_throughput_batches_store_and_queries() -> None:
    panels = _panels()
    (row,) = [i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Records"]
    following = [p for p in panels[row + 1 :]]
    end = next((i for i, p in enumerate(following) if p["type"] == "row"), len(following))
    exprs = " ".join(t["expr"] for p in following[:end] for t in p["targets"])
    for wanted in (
        "by (table, city) (codeengine_records_lag_entries)",
        "by (table, city) (codeengine_records_lag_seconds)",
        "by (table) (rate(codeengine_records_rows_total",
        "codeengine_records_batch_seconds_bucket",
        "by (table) (codeengine_records_store_rows)",
        "by (table) (codeengine_records_store_bytes)",
        "by (operation) (rate(codeengine_records_queries_total",
    ):
        assert wanted in exprs, wanted
