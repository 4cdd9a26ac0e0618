"""Issue 22, command line and project files: -C everywhere, confined paths, clear errors.

Every case here ended badly before: the wrong project changed, a file outside the
project read, or a user's mistake reported as "This is a bug".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from creaturekit import constants as C
from creaturekit.cli import app
from creaturekit.config import config_from_dict, load_config
from creaturekit.errors import UnsafePathError
from creaturekit.generation.requests import PartRequestError, Vocabulary, parse_prompt
from creaturekit.models import project_model, trust_model_path
from creaturekit.project import open_project
from creaturekit.training.run import RunVocab, VocabPart
from tests.helpers import write_image


def _copy(discovered: Path, tmp_path: Path, name: str = "proj") -> Path:
    return Path(shutil.copytree(discovered, tmp_path / name))


def _fails_clearly(result: click.testing.Result, *words: str) -> None:
    """Exit 1 with one message containing ``words``; never reported as a bug."""
    assert result.exit_code == 1, result.output
    assert "bug" not in result.output and "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def _edit_toml(root: Path, old: str, new: str) -> None:
    path = root / C.CONFIG_NAME
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# -- -C ------------------------------------------------------------------------------
def test_parts_name_honours_the_groups_project_option(
    runner: CliRunner, discovered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, other = _copy(discovered, tmp_path, "here"), _copy(discovered, tmp_path, "other")
    monkeypatch.chdir(here)
    result = runner.invoke(app, ["parts", "-C", str(other), "name", "0", "beak"])
    assert result.exit_code == 0, result.output
    assert load_config(other / C.CONFIG_NAME).parts.names == {"0": "beak"}
    assert load_config(here / C.CONFIG_NAME).parts.names == {}


def test_git_order_top_level_directory(
    runner: CliRunner, discovered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _copy(discovered, tmp_path)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["-C", "proj", "parts", "name", "1", "tail"])
    assert result.exit_code == 0, result.output
    assert load_config(project / C.CONFIG_NAME).parts.names == {"1": "tail"}
    assert Path.cwd() == tmp_path  # back where it started
    listing = runner.invoke(app, ["-C", str(project), "parts", "--json"])
    assert listing.exit_code == 0 and "tail" in listing.stdout
    missing = runner.invoke(app, ["-C", "nope", "info"])
    assert missing.exit_code == 2 and "not a folder" in missing.output


# -- paths read from project files ------------------------------------------------------
@pytest.mark.parametrize("bad", ["/etc/hostname", "../../outside.png", "toy/../../x.png"])
def test_manifest_paths_stay_inside_the_project(
    runner: CliRunner, discovered: Path, tmp_path: Path, bad: str
) -> None:
    project = _copy(discovered, tmp_path)
    manifest = project / C.IMAGES_DIR / C.MANIFEST_NAME
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[0]["file"] = bad
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["discover", "-C", str(project), "--backend", "effnet-kmeans"])
    _fails_clearly(result, "manifest.jsonl", "outside")


# -- creaturekit.toml --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("format_version = 1", "format_version = 99", ["format_version", "upgrade"]),
        ('template = "{parts}"', 'template = "{0}"', ["mix.template"]),  # toy projects
        ("guidance = 5.0", "guidance = nan", ["mix.guidance", "finite"]),  # toy projects: 5
        ("names = {}", 'names = { 0 = "seed" }', ["seed", "option"]),
    ],
)
def test_bad_settings_are_refused_with_the_key(
    runner: CliRunner, discovered: Path, tmp_path: Path, old: str, new: str, words: list[str]
) -> None:
    project = _copy(discovered, tmp_path)
    _edit_toml(project, old, new)
    _fails_clearly(runner.invoke(app, ["info", "-C", str(project)]), *words)


def test_non_utf8_settings_file(runner: CliRunner, discovered: Path, tmp_path: Path) -> None:
    project = _copy(discovered, tmp_path)
    path = project / C.CONFIG_NAME
    path.write_bytes(path.read_bytes() + b"\n# caf\xe9 \xff\n")
    _fails_clearly(runner.invoke(app, ["info", "-C", str(project)]), "creaturekit.toml", "UTF-8")


def test_a_part_cannot_take_the_name_of_a_mix_option(
    runner: CliRunner, discovered: Path, tmp_path: Path
) -> None:
    project = _copy(discovered, tmp_path)
    result = runner.invoke(app, ["parts", "-C", str(project), "name", "0", "seed"])
    _fails_clearly(result, "--seed")
    assert load_config(project / C.CONFIG_NAME).parts.names == {}


def test_reserved_names_cover_every_mix_option() -> None:
    command = typer.main.get_command(app).commands["mix"]  # type: ignore[attr-defined]
    options = {
        opt.lstrip("-").replace("-", "_")
        for param in command.params
        for opt in param.opts
        if opt.startswith("--")
    }
    assert options - {"json"} <= C.MIX_OPTION_NAMES | {"json"}
    assert "json" in C.MIX_OPTION_NAMES


# -- generation settings and prompts ----------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "word"),
    [
        (["--guidance", "nan"], "--guidance"),
        (["--guidance", "inf"], "--guidance"),
        (["--size", "7"], "--size"),
        (["--seed", str(2**70)], "--seed"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_generation_settings_are_checked_before_any_work(
    runner: CliRunner, discovered: Path, tmp_path: Path, flags: list[str], word: str
) -> None:
    project = _copy(discovered, tmp_path)
    result = runner.invoke(app, ["mix", "-C", str(project), "--part0", "1", *flags])
    if result.exit_code == 2:  # click refused the number itself (e.g. too large for int)
        assert "bug" not in result.output and word in result.output
        return
    _fails_clearly(result, word)


@pytest.mark.parametrize("prompt", ["a <head:> bird", "a <head:abc> bird", "a <:3> bird"])
def test_malformed_part_requests_in_a_prompt_are_errors(prompt: str) -> None:
    head = VocabPart(0, False, "head", 4, "<part_0>", 49408)
    vocab = Vocabulary(
        RunVocab("stamp", "hash", "bird", [head]),
        config_from_dict({"parts": {"names": {"0": "head"}}}),
    )
    with pytest.raises(PartRequestError, match="not a part request"):
        parse_prompt(prompt, vocab)
    assert parse_prompt("a <head:3> bird", vocab)[1][0].code == 3


# -- the lock and the file system -------------------------------------------------------
# null and garbage were handled before; a record of the wrong shape was a bug
@pytest.mark.parametrize("content", ['{"pid": "x"}', "[1, 2]", "null", "\xff garbage"])
def test_a_malformed_lock_file_is_taken_over(
    runner: CliRunner,
    discovered: Path,
    tmp_path: Path,
    content: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = _copy(discovered, tmp_path)
    (project / C.LOCK_NAME).write_text(content, encoding="utf-8", errors="surrogateescape")
    monkeypatch.chdir(project)
    result = runner.invoke(app, ["parts", "name", "0", "beak"])
    assert result.exit_code == 0, result.output
    assert not (project / C.LOCK_NAME).exists()


def test_a_read_only_project_is_a_clear_error(
    runner: CliRunner, discovered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import creaturekit.lock

    project = _copy(discovered, tmp_path)

    def refuse(path: object, *args: object) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(creaturekit.lock.os, "open", refuse)  # root ignores chmod
    result = runner.invoke(app, ["parts", "-C", str(project), "name", "0", "beak"])
    _fails_clearly(result, "permission denied", str(project))


def test_os_refusals_anywhere_are_messages_not_bugs(
    runner: CliRunner, discovered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import creaturekit.cli.info

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "x.json")

    monkeypatch.setattr(creaturekit.cli.info, "project_summary", full)
    result = runner.invoke(app, ["info", "-C", str(_copy(discovered, tmp_path))])
    _fails_clearly(result, "No space left", "x.json")


# -- importing images --------------------------------------------------------------------
def test_a_very_long_file_name_is_imported_not_fatal(runner: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "src"
    write_image(source / ("a" * 250 + ".png"), seed=1)
    write_image(source / "ok.png", seed=2)
    result = runner.invoke(app, ["init", str(tmp_path / "p"), "--images", str(source)])
    assert result.exit_code == 0, result.output
    project = open_project(tmp_path / "p")
    assert len(project.manifest()) == 2
    assert all(project.image_path(r).is_file() for r in project.manifest())


def test_one_too_large_image_says_why_without_a_deleted_report(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    write_image(source / "big.png", size=(200, 200))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    result = runner.invoke(app, ["init", str(tmp_path / "p"), "--images", str(source)])
    _fails_clearly(result, "big.png", "too large")
    assert "import-report" not in result.output and not (tmp_path / "p").exists()


def test_a_toy_set_never_replaces_files_it_did_not_draw(runner: CliRunner, tmp_path: Path) -> None:
    args = ["init", str(tmp_path / "p"), "--example", "toy", "--species", "5", "--per-species", "1"]
    assert runner.invoke(app, args).exit_code == 0
    mine = tmp_path / "p" / C.IMAGES_DIR / C.TOY_DIR / "mine.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mine)
    _fails_clearly(runner.invoke(app, [*args, "--force"]), "mine.png")
    assert mine.is_file()
    _fails_clearly(runner.invoke(app, [*args[:-2], "--seed", "-1"]), "seed")


# -- model paths named by project files ---------------------------------------------------
@pytest.mark.parametrize("model", ["/etc", "../elsewhere", "~/models/sd"])
def test_a_settings_model_path_outside_the_project_is_refused(
    runner: CliRunner, discovered: Path, tmp_path: Path, model: str
) -> None:
    project = _copy(discovered, tmp_path)
    _edit_toml(project, '\nmodel = "facebook/dinov2-base"', f'\nmodel = "{model}"')
    result = runner.invoke(app, ["discover", "-C", str(project)])
    _fails_clearly(result, "discover.model", "outside")


def test_a_path_the_user_named_is_trusted_on_this_machine(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "project", tmp_path / "models" / "sd"
    root.mkdir()
    elsewhere.mkdir(parents=True)
    (root / "weights").mkdir()
    where = "fit.model in creaturekit.toml"
    assert project_model("weights", root, where) == str((root / "weights").resolve())
    assert project_model("org/hub-model", root, where) == "org/hub-model"
    with pytest.raises(UnsafePathError, match="--model"):
        project_model(str(elsewhere), root, where)
    trust_model_path(str(elsewhere))  # `fit --model PATH`: the user's own choice
    assert project_model(str(elsewhere), root, where) == str(elsewhere.resolve())


def test_the_discovery_backbone_recorded_in_discovery_is_confined(
    discovered: Path, tmp_path: Path
) -> None:
    from creaturekit.discovery.discover import load_discoverer

    project = _copy(discovered, tmp_path)
    path = project / C.DISCOVERY_DIR / "config.json"
    config = json.loads(path.read_text())
    config["params"]["model"] = "/etc"
    path.write_text(json.dumps(config))
    with pytest.raises(UnsafePathError, match=r"config\.json"):
        load_discoverer(project / C.DISCOVERY_DIR)


def test_a_folder_that_is_not_a_model_is_a_clear_error(
    runner: CliRunner, discovered: Path, tmp_path: Path
) -> None:
    project = _copy(discovered, tmp_path)
    args = ["discover", "-C", str(project), "--backend", "dino-kmeans", "--model", str(tmp_path)]
    _fails_clearly(runner.invoke(app, args), "Could not load the feature backbone", str(tmp_path))


def test_fit_workers_get_the_command_line_without_the_top_level_directory() -> None:
    from creaturekit.cli.fit import worker_command_line

    argv = ["-C", "p", "--debug", "fit", "--run", "x", "--num-processes", "2", "-C", "q"]
    assert worker_command_line(argv) == ["--debug", "fit", "--run", "x", "-C", "q"]
    assert worker_command_line(["-Cp", "fit", "--num-processes=3"]) == ["fit"]


def test_fit_names_a_damaged_discovery_file(
    runner: CliRunner, discovered: Path, tmp_path: Path, tiny_sd: Path
) -> None:
    project = _copy(discovered, tmp_path)
    centroids = project / C.DISCOVERY_DIR / "centroids.safetensors"
    centroids.write_bytes(centroids.read_bytes()[:100])
    args = ["fit", "-C", str(project), "--model", str(tiny_sd), "--steps", "1"]
    _fails_clearly(runner.invoke(app, args), "centroids.safetensors")


def test_image_paths_in_discovery_codes_stay_inside_the_project(
    runner: CliRunner, discovered: Path, tmp_path: Path
) -> None:
    project = _copy(discovered, tmp_path)
    codes = project / C.DISCOVERY_DIR / "codes.jsonl"
    rows = [json.loads(line) for line in codes.read_text().splitlines()]
    rows[0]["file"] = "/etc/hostname"
    codes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _fails_clearly(runner.invoke(app, ["parts", "-C", str(project)]), "codes.jsonl", "outside")


def test_json_files_never_hold_nan(tmp_path: Path) -> None:
    from creaturekit import fsutil

    fsutil.write_json(tmp_path / "m.json", {"fid": float("nan"), "kid": [float("inf"), 1.0]})
    fsutil.write_jsonl(tmp_path / "l.jsonl", [{"loss": float("-inf")}])
    for name in ("m.json", "l.jsonl"):
        assert "NaN" not in (tmp_path / name).read_text()
        assert "Infinity" not in (tmp_path / name).read_text()
    assert json.loads((tmp_path / "m.json").read_text()) == {"fid": None, "kid": [None, 1.0]}


@pytest.mark.parametrize("link", [False, True])
def test_an_import_never_replaces_a_file_it_did_not_write(
    runner: CliRunner, tmp_path: Path, link: bool
) -> None:
    source = tmp_path / "src"
    write_image(source / "a.png", seed=1)
    write_image(source / "b.png", seed=2)
    project = tmp_path / "p"
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    mine = project / C.IMAGES_DIR / "b.png"
    mine.write_bytes(b"my own notes")
    flags = ["--link"] if link else []
    result = runner.invoke(app, ["init", str(project), "--force", "--images", str(source), *flags])
    assert result.exit_code == 0, result.output
    assert mine.read_bytes() == b"my own notes"
    assert len(open_project(project).manifest()) == 2
