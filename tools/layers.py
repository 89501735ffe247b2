"""The layer contract: which package may import which, and no import circles.

``python -m tools.layers`` prints every breach and exits 1 if there is one;
``tests/unit/test_layers.py`` runs the same check on every test run. The layers, from the
bottom (``docs/architecture.md`` draws them):

* ``codeengine.code``: the code format and rules, pure. It imports nothing else of the project
  and no I/O library: this is what the offline terminal SDK runs on.
* ``codeengine`` base modules (``settings``, ``metrics``, ``keyfiles``): configuration, metric
  names and the reading of secret files, shared by every layer above.
* ``codeengine.store``: the store port, the Redis Cluster client, the scripts and the adapters.
* ``failover``: the breaker, router and client that integrators embed (code and base only).
* ``codeengine.web``: the HTTP plumbing and pages shared by the services.
* ``codeengine.records``: the records service (the topic library on ClickHouse); the only
  layer that imports the ClickHouse client libraries.
* ``issuer``, ``verifier``: the services; ``verifier.offline``, the terminal SDK, imports the
  pure layer alone.
* ``codeengine.ops``: the command line, development cluster, supervisor, harness and drills;
  it may import anything, and nothing of the services imports it.

The services talk to Redis only through ``codeengine.store.cluster``: redis-py, the general
client, is for where speed does not matter (test oracles, the store-client benchmark), so no
layer below ``ops`` may import it.

The check is static: every ``import`` statement counts, inside functions and under
``TYPE_CHECKING`` too, so a lazy import cannot hide a breach. A package's ``__init__`` runs
before any module inside it, so it is held to the layer of every module below it too: that is
what keeps ``import verifier.offline`` from loading the verifier service.
"""

from __future__ import annotations

__all__ = ["PACKAGES", "Breach", "breaches", "circles", "import_graph", "layer_of"]

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("codeengine", "issuer", "verifier", "failover")

BASE = frozenset(
    {
        "codeengine",
        "codeengine.settings",
        "codeengine.metrics",
        "codeengine.keyfiles",
        "codeengine.logs",
        "codeengine.logfile",
    }
)

# Layer name -> the layers its modules may import (each may import itself).
ALLOWED: Mapping[str, frozenset[str]] = {
    "code": frozenset(),
    "base": frozenset({"code"}),
    "store": frozenset({"code", "base"}),
    "failover": frozenset({"code", "base"}),
    "web": frozenset({"code", "base", "store"}),
    "issuer": frozenset({"code", "base", "store", "web", "failover"}),
    "verifier": frozenset({"code", "base", "store", "web", "failover", "offline"}),
    "offline": frozenset({"code"}),
    "records": frozenset({"code", "base", "store", "web"}),
    "ops": frozenset(
        {"code", "base", "store", "web", "failover", "issuer", "verifier", "offline", "records"}
    ),
}

# Libraries that do I/O, keep time or draw randomness: the pure layer takes these as arguments.
IMPURE = frozenset(
    {
        "aiohttp",
        "asyncio",
        "hiredis",
        "http",
        "httptools",
        "multiprocessing",
        "os",
        "prometheus_client",
        "random",
        "redis",
        "secrets",
        "selectors",
        "socket",
        "ssl",
        "subprocess",
        "threading",
        "time",
        "urllib.request",
        "uvloop",
    }
)


# What only a server needs: the terminal SDK (verifier.offline) may keep a clock, not these.
SERVER_ONLY = frozenset({"aiohttp", "hiredis", "httptools", "prometheus_client", "redis", "uvloop"})

# The general Redis client: what the services send goes through codeengine.store.cluster.
GENERAL_CLIENT = frozenset({"redis"})

# The ClickHouse clients: heavy (the embedded engine is a 180 MB library), for the records
# service alone; the issuer and verifier images do not carry them.
COLUMNAR = frozenset({"chdb", "clickhouse_connect"})
FORBIDDEN: Mapping[str, frozenset[str]] = {
    "code": IMPURE | COLUMNAR,
    "offline": SERVER_ONLY | COLUMNAR,
    **dict.fromkeys(
        ("base", "store", "failover", "web", "issuer", "verifier"), GENERAL_CLIENT | COLUMNAR
    ),
    "records": GENERAL_CLIENT,
}


@dataclass(frozen=True, slots=True)
class Breach:
    """One import that the contract forbids."""

    module: str
    imported: str
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}: {self.why}"


def layer_of(module: str) -> str:
    """The layer a project module belongs to."""
    if module in BASE:
        return "base"
    if module == "codeengine.__main__":
        return "ops"
    for prefix, layer in (
        ("codeengine.code", "code"),
        ("codeengine.store", "store"),
        ("codeengine.web", "web"),
        ("codeengine.ops", "ops"),
        ("codeengine.records", "records"),
        ("verifier.offline", "offline"),
    ):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    top = module.partition(".")[0]
    if top in ("issuer", "verifier", "failover"):
        return top
    raise ValueError(f"{module}: in no layer (add it to tools/layers.py)")


def _modules(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """Every name an import statement of the file reaches, absolute, with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """Project module -> the project modules it imports, with the first line of each."""
    modules = _modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        for name, line in _imports(path, module):
            target = resolve(name)
            # A module's import of its own top package (``from codeengine import x`` where x is
            # a submodule) reaches the submodule, which is listed on its own.
            if (
                target
                and target != module
                and not (module.startswith(target + ".") and target in PACKAGES)
            ):
                edges.setdefault(target, line)
    return graph


def breaches(root: Path) -> list[Breach]:
    """Every import that crosses the layers the wrong way, or takes I/O into the pure layer."""
    found: list[Breach] = []
    graph = import_graph(root)
    for module, edges in sorted(graph.items()):
        layer = layer_of(module)
        for target, line in sorted(edges.items()):
            other = layer_of(target)
            if other != layer and other not in ALLOWED[layer]:
                found.append(Breach(module, target, line, f"layer {layer} may not import {other}"))
    modules = _modules(root)
    for module, path in sorted(modules.items()):
        layer = layer_of(module)
        forbidden = FORBIDDEN.get(layer, frozenset())
        for name, line in _imports(path, module):
            if any(name == lib or name.startswith(lib + ".") for lib in forbidden):
                found.append(Breach(module, name, line, f"layer {layer} may not import {name}"))
    found += _ancestor_breaches(graph, modules)
    return found


def _ancestor_breaches(
    graph: Mapping[str, Mapping[str, int]], modules: Mapping[str, Path]
) -> list[Breach]:
    """What the packages above a module import, held to the module's layer.

    Importing ``verifier.offline`` runs ``verifier/__init__.py`` first: were that to import the
    service, the terminal SDK would load the server's libraries although no module of its own
    layer imports them.
    """
    found: list[Breach] = []
    checked: set[tuple[str, str]] = set()
    for module in sorted(modules):
        layer = layer_of(module)
        parts = module.split(".")
        for ancestor in (".".join(parts[:n]) for n in range(1, len(parts))):
            if (
                ancestor not in modules
                or layer_of(ancestor) == layer
                or (ancestor, layer) in checked
            ):
                continue
            checked.add((ancestor, layer))
            why = f"importing a layer {layer} module runs it"
            for target, line in sorted(graph[ancestor].items()):
                other = layer_of(target)
                if other != layer and other not in ALLOWED[layer]:
                    found.append(
                        Breach(ancestor, target, line, f"{why}; {layer} may not import {other}")
                    )
            forbidden = FORBIDDEN.get(layer, frozenset())
            for name, line in _imports(modules[ancestor], ancestor):
                if any(name == lib or name.startswith(lib + ".") for lib in forbidden):
                    found.append(
                        Breach(ancestor, name, line, f"{why}; {layer} may not import {name}")
                    )
    return found


def circles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main(argv: list[str]) -> int:
    """Print every breach and circle under the folder given (default: here)."""
    root = Path(argv[0]) if argv else Path()
    problems = [str(b) for b in breaches(root)]
    problems += ["circle: " + " <-> ".join(c) for c in circles(import_graph(root))]
    for line in problems:
        print(line)
    print(f"{len(problems)} breaches of the layer contract")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
