"""The JSON a one-shot benchmark leaves in ``bench/results/``: what ran, when, on what, and what
it measured."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def save_latest(
    file: str, module: str, machine: Mapping[str, Any], measured: Mapping[str, Any]
) -> Path:
    """Write ``bench/results/{file}-latest.json`` for ``python -m {module}``; its path.

    The document opens with the command, the date and the machine (the Python version, then
    ``machine``), and goes on with ``measured`` in its order.
    """
    RESULTS.mkdir(exist_ok=True)
    document = {
        "command": f"python -m {module}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), **machine},
        **measured,
    }
    path = RESULTS / f"{file}-latest.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
