"""The one loader of known-answer vectors (``tests/vectors/*.json``, ``{source, cases}``).

Use: ``@pytest.mark.parametrize("case", cases("tokens"), ids=case_id)``.
"""

from __future__ import annotations

__all__ = [
    "TOOLS_DIR",
    "VECTORS_DIR",
    "Case",
    "case_id",
    "cases",
    "generator",
    "load",
    "vectors_path",
]

import importlib.util
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"
TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"

Case = dict[str, Any]


def vectors_path(name: str) -> Path:
    """The file of a vector set, by name without ``.json``."""
    return VECTORS_DIR / f"{name}.json"


@cache
def _text(name: str) -> str:
    return vectors_path(name).read_text(encoding="utf-8")


def load(name: str) -> dict[str, Any]:
    """The whole document of a vector set (a fresh copy: tests may not alter each other's)."""
    document = json.loads(_text(name))
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise ValueError(f"{name}.json is not {{source, cases: [...]}}")
    if not document.get("source"):
        raise ValueError(f"{name}.json does not say where its answers come from")
    return document


def cases(name: str, where: Callable[[Case], bool] | None = None) -> list[Case]:
    """The cases of a vector set, optionally filtered; fails loudly if none match."""
    chosen = [case for case in load(name)["cases"] if where is None or where(case)]
    if not chosen:
        raise ValueError(f"no cases in {name}.json match the filter")
    return chosen


def case_id(case: Case) -> str:
    """A readable test id: the case's own id."""
    return str(case["id"])


@cache
def generator(script: str) -> ModuleType:
    """The script under tools/ that made a vector set, loaded by path to re-run it in memory.

    Loaded by path rather than imported because tools/ is not a package: a static import would
    give mypy the same file under two module names.
    """
    path = TOOLS_DIR / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"_vector_tools.{script}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SHC_EXAMPLE_ISSUER = "https://spec.smarthealth.cards/examples/issuer"
"""The issuer of the SMART Health Cards specification's worked examples (tests/vectors/interop)."""


def shc_example_trust() -> dict[str, Any]:
    """A verifier's SHC trust file (docs/formats.md) trusting the examples' issuer: its key set
    and its revocation lists, as the specification publishes them."""
    well_known = VECTORS_DIR / "interop" / "shc" / "examples" / "issuer" / ".well-known"
    issuer = {
        "iss": SHC_EXAMPLE_ISSUER,
        "jwks": json.loads((well_known / "jwks.json").read_text()),
        "crls": [json.loads(p.read_text()) for p in sorted((well_known / "crl").glob("*.json"))],
    }
    return {"issuers": [issuer]}
