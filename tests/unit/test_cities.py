"""The city table: all 13 cities load, and every kind of mistake in a file is named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codeengine.code.cities import CITIES_DIR, CityTableError, load_cities
from codeengine.code.model import CITIES


def test_every_city_of_the_province_has_a_primary_and_a_backup() -> None:
    table = load_cities()
    assert set(table) == set(CITIES)
    for code, city in table.items():
        assert city.name_en == CITIES[code]
        for service in ("issuer", "verifier"):
            primary, backup = city.endpoints(service)
            assert primary.startswith("http") and backup.startswith("http")
            assert primary != backup
    assert sum(c.residents_millions for c in table.values()) == pytest.approx(84.75, abs=0.5)


@pytest.fixture
def table_dir(tmp_path: Path) -> Path:
    target = tmp_path / "cities"
    shutil.copytree(CITIES_DIR, target)
    return target


def _edit(directory: Path, code: int, old: str, new: str) -> None:
    path = directory / f"{code}.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('verifier = "http://127.0.0.1:9001"', 'verifier = "ftp://x"', "primary.verifier"),
        (
            'issuer = "http://127.0.0.1:9002"',
            'issuer = "http://127.0.0.1:9000"',
            "not be the primary",
        ),
        ("code = 320100", "code = 320199", "code must be"),
        ('name_en = "Nanjing"', 'name_en = "Nanjing"\nextra = 1', "unknown ['extra']"),
        (
            'issuer = "http://127.0.0.1:9000"',
            'issuer = "http://127.0.0.1:9000/v1"',
            "without a path",
        ),
        ("residents_millions = 9.31", "residents_millions = -1", "residents_millions"),
        ("[backup]", "[backup", "cannot read"),
    ],
)
def test_a_wrong_file_is_refused_naming_the_file(
    table_dir: Path, old: str, new: str, message: str
) -> None:
    _edit(table_dir, 320100, old, new)
    with pytest.raises(CityTableError, match=r"320100\.toml") as caught:
        load_cities(table_dir)
    assert message in str(caught.value)


def test_a_missing_city_is_refused(table_dir: Path) -> None:
    (table_dir / "321300.toml").unlink()
    with pytest.raises(CityTableError, match="321300"):
        load_cities(table_dir)
