"""Where the configuration shipped with the engine is: the city table, rules and fusion files.

The repository keeps them in its top-level ``configs/`` folder; a wheel carries the same files as
package data under ``codeengine/defaults/`` (``pyproject.toml`` maps the one onto the other).
Every reader of a shipped file asks here, so it is found the same way in a checkout, an editable
install and an installed wheel, and never relative to the working directory.
"""

from __future__ import annotations

__all__ = ["SHIPPED_NAMES", "ShippedConfigMissing", "shipped", "shipped_dir"]

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
"""The ``codeengine`` package folder."""

SHIPPED_NAMES = ("cities", "credentials.toml", "engine.toml", "fusion.toml", "rules.toml")
"""What the shipped configuration holds."""


class ShippedConfigMissing(FileNotFoundError):
    """Neither the installed package data nor the checkout's ``configs/`` folder is there."""


def shipped_dir(package: Path = _PACKAGE) -> Path:
    """The folder of the shipped configuration: ``<package>/defaults`` when installed from a
    wheel, else the ``configs/`` folder beside the package in a checkout."""
    installed = package / "defaults"
    if installed.is_dir():
        return installed
    checkout = package.parent / "configs"
    if checkout.is_dir():
        return checkout
    raise ShippedConfigMissing(
        f"no shipped configuration: neither {installed} nor {checkout} is a folder"
    )


def shipped(name: str, package: Path = _PACKAGE) -> Path:
    """The shipped file or folder ``name`` (one of :data:`SHIPPED_NAMES`), as an absolute path."""
    if name not in SHIPPED_NAMES:
        raise ValueError(f"{name!r} is not shipped; expected one of {SHIPPED_NAMES}")
    return shipped_dir(package) / name
