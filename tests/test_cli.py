"""The command surface: help everywhere, exit codes, one-line errors, JSON output, subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from creaturekit import __version__
from creaturekit.cli import app

COMMANDS = [
    "init", "discover", "fit", "mix", "eval", "export", "import-run", "parts", "info", "plugins",
    "demo", "studio",
]  # fmt: skip


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"creaturekit {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout


def test_every_registered_command_is_known() -> None:
    names = {c.name for c in typer.main.get_command(app).commands.values()}  # type: ignore[attr-defined]
    assert names == set(COMMANDS)


def test_error_outside_a_project_is_one_message(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 1
    assert "No creaturekit project" in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_debug_shows_the_exception(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creaturekit.cli.common import State

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(State, "debug", False)
    result = runner.invoke(app, ["--debug", "info"])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "ProjectNotFoundError"


@pytest.mark.reports_bug
def test_unexpected_error_is_reported_as_a_bug(
    runner: CliRunner, tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import creaturekit.cli.info as info_mod

    def broken(project: object) -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(info_mod, "project_summary", broken)
    runner.invoke(app, ["init", str(tmp_path / "p"), "--images", str(image_folder), "-q"])
    result = runner.invoke(app, ["info", "-C", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "bug in creaturekit" in result.stderr and "--debug" in result.stderr


def test_init_json_and_quiet(runner: CliRunner, tmp_path: Path, image_folder: Path) -> None:
    result = runner.invoke(
        app, ["init", str(tmp_path / "p"), "--images", str(image_folder), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (
        data["images"] == 6 and data["import"]["added"] == 6 and data["import"]["kind"] == "folder"
    )
    quiet = runner.invoke(app, ["init", str(tmp_path / "q"), "--images", str(image_folder), "-q"])
    assert quiet.exit_code == 0 and quiet.stdout == ""


def test_init_rejects_bad_split(runner: CliRunner, tmp_path: Path, image_folder: Path) -> None:
    result = runner.invoke(
        app, ["init", str(tmp_path / "p"), "--images", str(image_folder), "--split", "val"]
    )
    assert result.exit_code == 2 and not (tmp_path / "p").exists()
    assert "--split" in result.stderr and "bug" not in result.stderr


def test_init_twice_without_force(runner: CliRunner, tmp_path: Path, image_folder: Path) -> None:
    args = ["init", str(tmp_path / "p"), "--images", str(image_folder)]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "--force" in result.stderr


def test_info_text(runner: CliRunner, tmp_path: Path, image_folder: Path) -> None:
    runner.invoke(app, ["init", str(tmp_path / "p"), "--images", str(image_folder), "-q"])
    result = runner.invoke(app, ["info", "-C", str(tmp_path / "p")])
    assert result.exit_code == 0
    assert "Images: 6" in result.stdout and "not discovered yet" in result.stdout


def test_plugins_json(runner: CliRunner) -> None:
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    for row in json.loads(result.stdout):
        assert {"name", "distribution", "version", "builtin", "error"} <= set(row)


def test_real_subprocess(tmp_path: Path, image_folder: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    init = subprocess.run(
        [
            sys.executable,
            "-m",
            "creaturekit",
            "init",
            str(tmp_path / "p"),
            "--images",
            str(image_folder),
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    info = subprocess.run(
        [sys.executable, "-m", "creaturekit", "info", "--json"],
        cwd=tmp_path / "p" / "images",
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["images"]["total"] == 6
    missing = subprocess.run(
        [sys.executable, "-m", "creaturekit", "info"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "No creaturekit project" in missing.stderr


def test_shell_completion_is_available(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == 0 and "creaturekit" in result.stdout.lower()


def test_config_error_keeps_brackets(runner: CliRunner, tmp_path: Path, image_folder: Path) -> None:
    runner.invoke(app, ["init", str(tmp_path / "p"), "--images", str(image_folder), "-q"])
    with open(tmp_path / "p" / "creaturekit.toml", "a") as fh:
        fh.write("\n[nonsense]\nx = 1\n")
    result = runner.invoke(app, ["info", "-C", str(tmp_path / "p")])
    assert result.exit_code == 1 and "Unknown section [nonsense]" in result.stderr


def test_cli_start_up_does_not_import_torch() -> None:
    code = "import sys, creaturekit.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # --help and --version stay instant
