"""The shipped configuration is found by the package, not the working directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codeengine.code.cities import CITIES_DIR, CityTableError, load_cities
from codeengine.code.fusion import FUSION_FILE
from codeengine.code.model import CityCode
from codeengine.code.rules import RULES_FILE
from codeengine.code.shipped import SHIPPED_NAMES, ShippedConfigMissing, shipped, shipped_dir
from codeengine.ops.cli import _cities
from codeengine.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_in_the_checkout_the_shipped_configuration_is_the_configs_folder() -> None:
    assert shipped_dir() == ROOT / "configs"
    assert (CITIES_DIR, RULES_FILE, FUSION_FILE) == (
        ROOT / "configs" / "cities",
        ROOT / "configs" / "rules.toml",
        ROOT / "configs" / "fusion.toml",
    )
    assert sorted(p.name for p in shipped_dir().iterdir()) == sorted(SHIPPED_NAMES)


def test_an_installed_package_uses_its_own_defaults_folder_first(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "codeengine"
    (package / "defaults").mkdir(parents=True)
    # A configs/ folder beside site-packages belongs to someone else: never read it.
    (tmp_path / "site-packages" / "configs").mkdir()
    assert shipped_dir(package) == package / "defaults"
    assert shipped("rules.toml", package) == package / "defaults" / "rules.toml"


def test_a_checkout_layout_falls_back_to_configs_and_nothing_at_all_is_an_error(
    tmp_path: Path,
) -> None:
    package = tmp_path / "repo" / "codeengine"
    package.mkdir(parents=True)
    with pytest.raises(ShippedConfigMissing, match="defaults"):
        shipped_dir(package)
    (tmp_path / "repo" / "configs").mkdir()
    assert shipped_dir(package) == tmp_path / "repo" / "configs"
    with pytest.raises(ValueError, match="not shipped"):
        shipped("engine.tom", package)


def test_settings_default_to_the_shipped_files_wherever_the_process_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    codes = load_settings(env={}).codes
    assert codes.rules_path() == RULES_FILE
    assert codes.fusion_path() == FUSION_FILE
    assert codes.cities_path() == CITIES_DIR
    assert len(load_cities(codes.cities_path())) == 13


def test_a_city_table_of_ones_own_replaces_the_shipped_one(tmp_path: Path) -> None:
    own = tmp_path / "cities"
    shutil.copytree(CITIES_DIR, own)
    nanjing = own / "320100.toml"
    text = nanjing.read_text(encoding="utf-8")
    nanjing.write_text(text.replace("http://127.0.0.1:9000", "https://nanjing.example"), "utf-8")
    codes = load_settings(env={"CODEENGINE_CODES_CITIES_DIR": str(own)}).codes
    assert codes.cities_path() == own
    assert load_cities(codes.cities_path())[CityCode(320100)].primary.issuer == (
        "https://nanjing.example"
    )


def test_the_shipped_file_settings_take_paths_only(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text("[codes]\ncities_dir = 1\n")
    with pytest.raises(SettingsError, match=r"codes\.cities_dir"):
        load_settings(config, env={})


def test_make_run_cities_come_from_the_configured_table(tmp_path: Path) -> None:
    assert _cities("all", CITIES_DIR)[:2] == [320100, 320200]
    assert _cities("320500,320100", CITIES_DIR) == [320500, 320100]
    with pytest.raises(SettingsError, match="not a city code of the city table"):
        _cities("999999", CITIES_DIR)
    with pytest.raises(CityTableError, match="no city file"):
        _cities("all", tmp_path)
