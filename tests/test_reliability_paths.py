"""Issue 22, model paths that project files name: inside the project, or the user's own.

A received project's ``runs/<run>/config.toml`` (``base_model``), creaturekit.toml
(``fit.model``, the ``[eval]`` backbones) may name any path; creaturekit loads only hub
ids, presets, folders inside the project, or paths this machine's user named on a
command line. The user's ``--model PATH`` always works.
"""

from __future__ import annotations

from pathlib import Path

import click

from creaturekit import constants as C
from creaturekit import fsutil
from creaturekit.cli import app
from creaturekit.training.run import CONFIG_FILE, RunFolder
from tests.helpers import GuardedRunner

STRANGER = "/etc"  # a folder no test has named on a command line


def _refused(result: click.testing.Result, *words: str) -> None:
    out = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "bug" not in out
    for word in words:
        assert word in out, out


def _tamper_run(root: Path, **fit_values: str) -> None:
    folder = RunFolder(root / C.RUNS_DIR / "r1")
    config = folder.saved_config()
    config["base_model"] = STRANGER
    config["fit"].update(fit_values)
    fsutil.write_toml(folder.path / CONFIG_FILE, config)


def test_a_runs_base_model_outside_the_project_is_refused(fitted_copy: Path, tiny_sd: Path) -> None:
    _tamper_run(fitted_copy)
    runner = GuardedRunner()
    mix = runner.invoke(app, ["mix", "-C", str(fitted_copy), "--part0", "1", "--steps", "2"])
    _refused(mix, "base_model", STRANGER, "--model")
    evaluation = runner.invoke(app, ["eval", "-C", str(fitted_copy), "--no-image-metrics"])
    _refused(evaluation, "base_model", "--model")
    own = ["mix", "-C", str(fitted_copy), "--part0", "1", "--steps", "2", "--size", "16"]
    result = runner.invoke(app, [*own, "--model", str(tiny_sd)])
    assert result.exit_code == 0, result.output


def test_a_resumed_runs_model_outside_the_project_is_refused(fitted_copy: Path) -> None:
    _tamper_run(fitted_copy, model=STRANGER)
    result = GuardedRunner().invoke(
        app, ["fit", "-C", str(fitted_copy), "--run", "r1", "--resume", "--steps", "4"]
    )
    _refused(result, "config.toml", STRANGER)


def test_settings_models_outside_the_project_are_refused(fitted_copy: Path) -> None:
    text = (fitted_copy / C.CONFIG_NAME).read_text(encoding="utf-8")
    for old in ('model = "toy"', 'fid_model = "discovery"'):
        assert old in text
    text = text.replace('model = "toy"', f'model = "{STRANGER}"')
    text = text.replace('fid_model = "discovery"', f'fid_model = "{STRANGER}/x.pth"')
    (fitted_copy / C.CONFIG_NAME).write_text(text, encoding="utf-8")
    runner = GuardedRunner()
    fit = runner.invoke(app, ["fit", "-C", str(fitted_copy), "--run", "r2", "--steps", "1"])
    _refused(fit, "fit.model", STRANGER)
    evaluation = runner.invoke(app, ["eval", "-C", str(fitted_copy)])
    _refused(evaluation, "eval.fid_model", "--fid-model")
