"""The wheel's recipe: every package and shipped config listed, runtime dependencies exactly
what runtime code imports, one version, a licence. tests/e2e/test_install.py builds and
installs it for real."""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from codeengine import __version__
from codeengine.ops.cli import main
from tools.layers import SERVER_ONLY, import_graph

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("codeengine", "issuer", "verifier", "failover")
DEV_ONLY = {"redis", "pytest", "hypothesis", "pycose", "cbor2", "base45", "schemathesis", "locust"}


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _setuptools() -> dict[str, Any]:
    return dict(_pyproject()["tool"]["setuptools"])


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        found = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert found, requirement
        names.add(_normal(found.group()))
    return names


def test_every_package_data_folder_and_the_shipped_configs_are_listed() -> None:
    """Every folder of the project packages (Python or data alike), and configs/ mapped into
    the codeengine package: what is not listed is not in the wheel."""
    settings = _setuptools()
    on_disk = {
        ".".join(folder.relative_to(ROOT).parts)
        for top in PROJECT_PACKAGES
        for folder in [ROOT / top, *(ROOT / top).rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__"
    }
    assert {"codeengine.store.lua", "codeengine.web.static", "verifier.offline"} <= on_disk
    mapped = {name: ROOT / folder for name, folder in settings["package-dir"].items()}
    assert mapped == {
        "codeengine.defaults": ROOT / "configs",
        "codeengine.web.sdkjs": ROOT / "sdk" / "js" / "src",
    }
    shipped = {"codeengine.defaults", "codeengine.defaults.cities", "codeengine.web.sdkjs"}
    assert set(settings["packages"]) == on_disk | shipped


def test_every_data_file_of_the_packages_is_package_data() -> None:
    data = _setuptools()["package-data"]
    for top in PROJECT_PACKAGES:
        for path in (ROOT / top).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc"):
                continue
            package = ".".join(path.parent.relative_to(ROOT).parts)
            patterns = data.get(package, [])
            assert any(fnmatch.fnmatch(path.name, p) for p in patterns), (package, path.name)


def test_every_module_of_the_javascript_verifier_is_package_data_of_the_wheel() -> None:
    """The terminal page imports them from the verifier: an installed wheel must serve them."""
    patterns = _setuptools()["package-data"]["codeengine.web.sdkjs"]
    modules = list((ROOT / "sdk" / "js" / "src").iterdir())
    assert len(modules) >= 10
    for path in modules:
        assert any(fnmatch.fnmatch(path.name, p) for p in patterns), path.name


def test_every_file_of_configs_is_package_data_of_the_wheel() -> None:
    data = _setuptools()["package-data"]
    files = [p for p in (ROOT / "configs").rglob("*") if p.is_file()]
    assert len(files) >= 16
    for path in files:
        relative = path.relative_to(ROOT / "configs")
        package = ".".join(("codeengine", "defaults", *relative.parts[:-1]))
        patterns = data.get(package, [])
        assert any(fnmatch.fnmatch(relative.name, p) for p in patterns), (package, relative)


def _third_party_of(path: Path) -> set[str]:
    """The top-level modules outside the standard library and the project that one file
    imports (imports inside functions count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            module = name.split(".")[0]
            if module not in sys.stdlib_module_names and module not in PROJECT_PACKAGES:
                found.add(module)
    return found


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules outside the standard library and the project, and the files that
    import them."""
    found: dict[str, set[str]] = {}
    for top in PROJECT_PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            for module in _third_party_of(path):
                found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


def _specifiers(requirements: list[str]) -> dict[str, tuple[str, str]]:
    """Name -> (version specifier, environment marker) of each requirement."""
    found = {}
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        name = re.match(r"[A-Za-z0-9._-]+", spec)
        assert name, requirement
        found[_normal(name.group())] = (spec[name.end() :].strip(), marker.strip())
    return found


def test_runtime_dependencies_are_exactly_what_runtime_code_imports() -> None:
    project = _pyproject()["project"]
    declared = _requirement_names(project["dependencies"])
    terminal = _requirement_names(project["optional-dependencies"]["terminal"])
    distributions = importlib.metadata.packages_distributions()
    imported: dict[str, set[str]] = {}
    for module, files in _third_party_imports().items():
        for distribution in distributions.get(module, [module]):
            imported.setdefault(_normal(distribution), set()).update(files)
    # The terminal's image reader is an extra: only the terminal command line imports it.
    for name in terminal - declared:
        assert imported.pop(name, set()) <= {"verifier/offline/__main__.py"}, name
    # The ClickHouse clients are the records extra: only the records service imports them.
    records = _requirement_names(project["optional-dependencies"]["records"])
    for name in records - declared:
        files = imported.pop(name, set())
        assert all(f.startswith("codeengine/records/") for f in files), (name, files)
    assert set(imported) == declared, {
        "imported, not declared": {n: imported[n] for n in set(imported) - declared},
        "declared, not imported": declared - set(imported),
    }
    assert not declared & DEV_ONLY


def _terminal_sdk_closure() -> set[Path]:
    """The files that ``python -m verifier.offline`` can run: the SDK's modules, what they
    import (lazily too), and every package ``__init__`` above each, which Python runs first."""
    graph = import_graph(ROOT)
    seen: set[str] = set()
    todo = ["verifier.offline", "verifier.offline.__main__"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:n]) for n in range(1, len(parts))]
        todo += list(graph[module])
    files = set()
    for module in seen:
        path = ROOT.joinpath(*module.split("."))
        files.add(path / "__init__.py" if path.is_dir() else path.with_suffix(".py"))
    return files


def test_the_terminal_extra_is_exactly_what_the_terminal_sdk_imports() -> None:
    """The terminal extra is the light install (docs/sdk.md): with one library too few the
    SDK fails to start on a terminal, with one too many a terminal carries a server library."""
    project = _pyproject()["project"]
    terminal = _specifiers(project["optional-dependencies"]["terminal"])
    distributions = importlib.metadata.packages_distributions()
    files = _terminal_sdk_closure()
    assert ROOT / "verifier" / "__init__.py" in files
    assert ROOT / "codeengine" / "code" / "sm2.py" in files
    imported = {
        _normal(distribution)
        for path in files
        for module in _third_party_of(path)
        for distribution in distributions.get(module, [module])
    }
    assert imported == set(terminal)
    server = {_normal(name) for name in SERVER_ONLY}
    assert not set(terminal) & server
    # Where the core also requires one, the extra asks for the same versions.
    core = _specifiers(project["dependencies"])
    for name, (spec, marker) in terminal.items():
        assert marker == "", name
        if name in core:
            assert core[name][0] == spec, name


def test_the_light_install_in_the_sdk_document_is_the_terminal_extra() -> None:
    terminal = _pyproject()["project"]["optional-dependencies"]["terminal"]
    lines = (ROOT / "docs" / "sdk.md").read_text().splitlines()
    assert "pip install --no-deps codeengine" in lines
    assert " ".join(["pip install", *(f'"{r}"' for r in terminal)]) in lines


def test_uvloop_alone_is_left_out_on_windows() -> None:
    """A Windows terminal installs the package; uvloop has no Windows build, and the services,
    which alone import it, run on Linux and macOS."""
    core = _specifiers(_pyproject()["project"]["dependencies"])
    markers = {name: marker for name, (_, marker) in core.items() if marker}
    assert markers == {"uvloop": "sys_platform != 'win32'"}


def test_the_version_has_one_source_and_the_command_prints_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = _pyproject()["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert _setuptools()["dynamic"]["version"] == {"attr": "codeengine.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"codeengine {__version__}"


def test_the_licence_is_apache_2_0_in_full() -> None:
    assert _pyproject()["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
