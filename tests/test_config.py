"""creaturekit.toml: documented defaults, round trip, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from creaturekit.config import Config, config_to_dict, load_config, render_config
from creaturekit.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "creaturekit.toml"
    path.write_text(text)
    return path


def test_render_documents_every_value_and_round_trips(tmp_path: Path) -> None:
    config = Config()
    config.parts.names = {"0": "head", "3": "wing"}
    config.fit.overrides = {"steps": 2000, "lr": 5e-5}
    text = render_config(config)
    n_values = sum(len(v) for v in config_to_dict(config).values())
    assert text.count("\n# ") >= n_values  # a comment line before every value
    loaded = load_config(_write(tmp_path, text))
    assert loaded == config


def test_part_name_defaults() -> None:
    config = Config()
    config.parts.names = {"2": "head"}
    assert config.part_name(2) == "head"
    assert config.part_name(5) == "part5"
    assert config.part_name(7, is_background=True) == "bg"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nonsense]\na = 1\n", "Unknown section [nonsense]"),
        ("[discover]\nprts = 8\n", "Unknown key discover.prts"),
        ('[discover]\nparts = "eight"\n', "discover.parts must be int"),
        ("[discover]\nparts = true\n", "discover.parts must be int"),
        ('[parts]\nnames = {0 = "bg"}\n', "reserved for the background"),
        ('[parts]\nnames = {0 = "head", 1 = "head"}\n', "same name"),
        ('[parts]\nnames = {0 = "two words"}\n', "single word"),
        ('[parts]\nnames = {head = "head"}\n', "part indices"),
        ('[images]\nsplit = "val"\n', "images.split"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(_write(tmp_path, text))


def test_int_accepted_for_float(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "[mix]\nguidance = 7\n")).mix.guidance == 7.0
