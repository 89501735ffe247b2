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
    assert mapped == {"codeengine.defaults": ROOT / "configs"}
    shipped = {"codeengine.defaults", "codeengine.defaults.cities"}
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


def test_every_file_of_configs_is_package_data_of_the_wheel() -> None:
    data = _setuptools()["package-data"]
    files = [p for p in (ROOT / "configs").rglob("*") if p.is_file()]
    assert len(files) >= 16
    for path in files:
        relative = path.relative_to(ROOT / "configs")
        package = ".".join(("codeengine", "defaults", *relative.parts[:-1]))
        patterns = data.get(package, [])
        assert any(fnmatch.fnmatch(relative.name, p) for p in patterns), (package, relative)


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules outside the standard library and the project, and the files that
    import them (imports inside functions count too)."""
    found: dict[str, set[str]] = {}
    for top in PROJECT_PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    module = name.split(".")[0]
                    if module in sys.stdlib_module_names or module in PROJECT_PACKAGES:
                        continue
                    found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
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
