"""Write the services' OpenAPI documents for the default settings to ``docs/openapi/``.

``python -m tools.openapi`` (from the repository root) builds each app through its factory with
the default settings and writes the document it serves at ``/openapi.json`` (the records
service's from its route list, as its factory does: building that app needs an engine),
pretty-printed with
sorted keys; ``--check`` writes nothing and exits 1 if a committed file differs.
"""

from __future__ import annotations

__all__ = ["DOCS", "documents", "main", "render"]

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from codeengine.records.service import DESCRIPTION as RECORDS_DESCRIPTION
from codeengine.records.service import RECORDS_ROUTES
from codeengine.records.service import TITLE as RECORDS_TITLE
from codeengine.settings import Settings, load_settings
from codeengine.web.openapi import OPENAPI, openapi_document
from issuer.app import create_app as create_issuer
from verifier.app import create_app as create_verifier

DOCS = Path("docs/openapi")
_FACTORIES: dict[str, Callable[[Settings], web.Application]] = {
    "issuer": create_issuer,
    "verifier": create_verifier,
}


def documents(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each service's OpenAPI document, as its app built with ``settings`` serves it."""
    served = {name: factory(settings)[OPENAPI] for name, factory in _FACTORIES.items()}
    served["records"] = openapi_document(RECORDS_TITLE, RECORDS_DESCRIPTION, RECORDS_ROUTES, {})
    return served


def render(document: dict[str, Any]) -> str:
    """The committed text of a document: two-space indents, sorted keys, a final newline."""
    return msgspec.json.format(msgspec.json.encode(document, order="sorted"), indent=2).decode()


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) ``docs/openapi/{issuer,verifier,records}.json``."""
    parser = argparse.ArgumentParser(prog="python -m tools.openapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name, document in documents(load_settings(env={})).items():
        path = DOCS / f"{name}.json"
        text = render(document) + "\n"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date (run python -m tools.openapi): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
