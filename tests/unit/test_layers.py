"""The layer contract (tools/layers.py) holds on this tree and catches what it is for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.layers import breaches, circles, import_graph, layer_of

ROOT = Path(__file__).resolve().parents[2]


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in ("codeengine", "issuer", "verifier", "failover"):
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").touch()
    return tmp_path


def test_the_project_keeps_its_layers() -> None:
    assert [str(b) for b in breaches(ROOT)] == []


def test_the_project_has_no_import_circles() -> None:
    assert circles(import_graph(ROOT)) == []


def test_a_lower_layer_importing_a_higher_one_is_a_breach(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "codeengine/code/__init__.py": "",
            "codeengine/code/token.py": "from codeengine.store.cluster import FastCluster\n",
            "codeengine/store/__init__.py": "",
            "codeengine/store/cluster.py": "from codeengine.code import token\n",
            "codeengine/web/__init__.py": "",
            "codeengine/web/pages.py": "def f():\n    from codeengine.ops import cli\n",
            "codeengine/ops/__init__.py": "",
            "codeengine/ops/cli.py": "import codeengine.web.pages\n",
        },
    )
    found = {(b.module, b.imported, b.line) for b in breaches(root)}
    assert found == {
        ("codeengine.code.token", "codeengine.store.cluster", 1),
        # A lazy import inside a function counts as much as one at the top.
        ("codeengine.web.pages", "codeengine.ops", 2),
        ("codeengine.web.pages", "codeengine.ops.cli", 2),
    }


@pytest.mark.parametrize("library", ["asyncio", "redis.asyncio", "aiohttp", "time", "os"])
def test_the_pure_layer_imports_no_io_library(tmp_path: Path, library: str) -> None:
    root = _tree(
        tmp_path, {"codeengine/code/__init__.py": "", "codeengine/code/x.py": f"import {library}\n"}
    )
    assert [(b.module, b.imported) for b in breaches(root)] == [("codeengine.code.x", library)]


@pytest.mark.parametrize(
    "module", ["codeengine/store/x.py", "codeengine/web/x.py", "issuer/x.py", "verifier/x.py"]
)
def test_only_ops_may_import_the_general_redis_client(tmp_path: Path, module: str) -> None:
    root = _tree(
        tmp_path,
        {
            "codeengine/store/__init__.py": "",
            "codeengine/web/__init__.py": "",
            "codeengine/ops/__init__.py": "",
            "codeengine/ops/devcluster.py": "import redis\n",
            module: "import hiredis\nfrom redis.asyncio.cluster import RedisCluster\n",
        },
    )
    assert sorted(b.imported for b in breaches(root)) == [
        "redis.asyncio.cluster",
        "redis.asyncio.cluster.RedisCluster",
    ]


def test_the_terminal_sdk_may_keep_a_clock_but_not_a_server_library(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "verifier/offline/__init__.py": "",
            "verifier/offline/sdk.py": (
                "import time\nfrom aiohttp import web\nfrom verifier import app\n"
            ),
            "verifier/app.py": "",
        },
    )
    assert sorted((b.imported, b.line) for b in breaches(root)) == [
        ("aiohttp", 2),
        ("aiohttp.web", 2),
        ("verifier.app", 3),
    ]


def test_a_package_init_above_the_terminal_sdk_is_held_to_its_layer(tmp_path: Path) -> None:
    """``import verifier.offline`` runs ``verifier/__init__.py`` first: a service import there
    loads the server into the SDK, although no module of the SDK imports it."""
    root = _tree(
        tmp_path,
        {
            "verifier/offline/__init__.py": "from verifier.offline import sdk\n",
            "verifier/offline/sdk.py": "import time\n",
            "verifier/app.py": "import aiohttp\n",
        },
    )
    (root / "verifier" / "__init__.py").write_text(
        '"""The service."""\nimport uvloop\nfrom verifier.app import create_app\n'
    )
    found = sorted((b.module, b.imported, b.line) for b in breaches(root))
    # Once for the SDK's layer: the service itself may import both.
    assert found == [("verifier", "uvloop", 2), ("verifier", "verifier.app", 3)]


def test_a_circle_is_found_with_every_member(tmp_path: Path) -> None:
    # a -> b -> c -> a is one circle; d only leans on it from outside.
    chain = {"a": "from issuer import b", "b": "from issuer.c import x", "c": "import issuer.a"}
    root = _tree(tmp_path, {f"issuer/{m}.py": line + "\n" for m, line in chain.items()})
    (root / "issuer" / "d.py").write_text("import issuer.a\n")
    assert circles(import_graph(root)) == [["issuer.a", "issuer.b", "issuer.c"]]


def test_a_module_outside_every_layer_is_named() -> None:
    assert layer_of("codeengine.settings") == "base"
    assert layer_of("verifier.offline.sdk") == "offline"
    with pytest.raises(ValueError, match=r"codeengine\.newthing"):
        layer_of("codeengine.newthing")
