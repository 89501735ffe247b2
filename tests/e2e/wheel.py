"""Building the wheel from this checkout and making fresh virtualenvs, for the install tests.

The wheel is built by pip with build isolation (setuptools from the index, through pip's
cache), from a copy of the files the recipe names, so a file the build needs but the recipe
forgets fails the test that builds it.
"""

from __future__ import annotations

__all__ = ["HANG_GUARD_S", "RECIPE", "build_wheel", "fresh_venv", "run_ok", "timed"]

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "configs",
    "codeengine",
    "issuer",
    "verifier",
    "failover",
    "sdk/js/src",
)
"""What the build reads: the recipe, its readme and licence, the packages, the shipped configs,
the JavaScript verifier's modules."""
HANG_GUARD_S = 600.0
"""Against a hang only: building and installing take a minute or two on 2 busy cores."""


def run_ok(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end; it must succeed."""
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False
    )
    assert done.returncode == 0, (argv, done.stdout[-3000:], done.stderr[-3000:])
    return done


def build_wheel(tmp_path: Path) -> Path:
    """The project's wheel, built from a copy of what the recipe names."""
    source = tmp_path / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in RECIPE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    wheels = tmp_path / "wheels"
    run_ok(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)]
    )
    [wheel] = wheels.glob("codeengine-*.whl")
    return wheel


def fresh_venv(path: Path) -> Path:
    """A fresh virtualenv with no pip of its own (this interpreter's pip installs into it);
    its interpreter."""
    run_ok([sys.executable, "-m", "venv", "--without-pip", str(path)])
    return path / "bin" / "python"


@contextmanager
def timed(times: dict[str, float], step: str) -> Iterator[None]:
    """Record how long the block took under ``step``, for the test's output."""
    started = time.monotonic()
    yield
    times[step] = round(time.monotonic() - started, 1)
