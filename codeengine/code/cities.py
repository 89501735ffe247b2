"""The city table: each city's primary and backup (接口备用环境) issuer and verifier endpoints.

One TOML file per city under ``configs/cities/``, named by its six-digit code. App backends,
terminals, load tests and drills read the same table. Loading checks every file completely and
names the file and field at fault; a table with a city missing, doubled or unknown is refused.
"""

from __future__ import annotations

__all__ = ["CITIES_DIR", "City", "CityTableError", "Endpoints", "load_cities"]

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from codeengine.code.model import CITIES, CityCode
from codeengine.code.shipped import shipped

CITIES_DIR = shipped("cities")
"""The shipped city table (``configs/cities/``); ``codes.cities_dir`` names one's own."""
_FIELDS = {"code", "name", "name_en", "residents_millions", "primary", "backup"}
_SERVICES = ("issuer", "verifier")


class CityTableError(ValueError):
    """A city file is missing, malformed, or disagrees with the province's city list."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Base URLs of one environment's issuer and verifier."""

    issuer: str
    verifier: str


@dataclass(frozen=True, slots=True)
class City:
    """One city of the table."""

    code: CityCode
    name: str
    name_en: str
    residents_millions: float
    primary: Endpoints
    backup: Endpoints

    def endpoints(self, service: str) -> tuple[str, str]:
        """The primary and backup URL of ``issuer`` or ``verifier``."""
        if service not in _SERVICES:
            raise ValueError(f"service must be one of {_SERVICES}")
        return getattr(self.primary, service), getattr(self.backup, service)


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise CityTableError(f"{where} must be a URL string")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise CityTableError(f"{where} must be an http(s) base URL without a path")
    try:
        parts.port  # noqa: B018 - the property validates the port
    except ValueError:
        raise CityTableError(f"{where} has an invalid port") from None
    return value.rstrip("/")


def _endpoints(value: Any, where: str) -> Endpoints:
    if not isinstance(value, dict) or set(value) != set(_SERVICES):
        raise CityTableError(f"{where} must have exactly 'issuer' and 'verifier'")
    return Endpoints(*(_url(value[s], f"{where}.{s}") for s in _SERVICES))


def _city(path: Path) -> City:
    where = path.name
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CityTableError(f"{where}: cannot read: {exc}") from None
    unknown = set(document) - _FIELDS
    missing = _FIELDS - set(document)
    if unknown or missing:
        raise CityTableError(f"{where}: unknown {sorted(unknown)}, missing {sorted(missing)}")
    code = document["code"]
    if type(code) is not int or code not in CITIES or path.stem != str(code):
        raise CityTableError(f"{where}: code must be a city of the province and the file's name")
    for name in ("name", "name_en"):
        if not isinstance(document[name], str) or not document[name].strip():
            raise CityTableError(f"{where}: {name} must be non-empty text")
    residents = document["residents_millions"]
    if type(residents) not in (int, float) or not 0 < residents < 100:
        raise CityTableError(f"{where}: residents_millions must be a positive number")
    primary = _endpoints(document["primary"], f"{where}: primary")
    backup = _endpoints(document["backup"], f"{where}: backup")
    if primary.issuer == backup.issuer or primary.verifier == backup.verifier:
        raise CityTableError(f"{where}: the backup must not be the primary")
    return City(
        CityCode(code), document["name"], document["name_en"], float(residents), primary, backup
    )


def load_cities(directory: Path = CITIES_DIR) -> dict[CityCode, City]:
    """Every city of the province from ``directory``; CityTableError if any is wrong or absent."""
    files = sorted(directory.glob("*.toml"))
    cities = [_city(path) for path in files]
    table = {city.code: city for city in cities}
    absent = sorted(set(CITIES) - set(table))
    if absent:
        raise CityTableError(f"no city file for {', '.join(map(str, absent))}")
    # Cities may share a backup environment (one pool carries any one failed city), so URLs
    # are not required to differ between cities; within a city the backup is elsewhere.
    return table
