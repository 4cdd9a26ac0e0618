"""``export --out`` never deletes or replaces what it did not write (issue 22)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from creaturekit import fsutil
from creaturekit.cli import app
from creaturekit.generation.export import MARKER, export_run
from creaturekit.project import open_project


def export(runner: CliRunner, project: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["export", "-C", str(project), *args])
    return result.exit_code, result.stderr


def listing(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def marker(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / MARKER).read_text())
    return data


def test_a_folder_of_the_user_is_refused_and_force_keeps_its_files(
    fitted_copy: Path, tmp_path: Path, runner: CliRunner
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / "embeddings").mkdir()
    (out / "embeddings" / "mine.safetensors").write_bytes(b"my embedding")
    code, err = export(runner, fitted_copy, "--out", str(out))
    assert code == 1 and "not a creaturekit export (embeddings, notes.txt)" in err
    assert "--force" in err and "This is a bug" not in err
    assert sorted(listing(out)) == ["embeddings/mine.safetensors", "notes.txt"]

    code, err = export(runner, fitted_copy, "--out", str(out), "--force")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "embeddings" / "mine.safetensors").read_bytes() == b"my embedding"
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    saved = marker(out)
    assert saved["complete"] is True and saved["run"] == "r1" and saved["format"] == "diffusers"
    files = saved["files"]
    assert isinstance(files, list) and "notes.txt" not in files
    assert set(files) == set(listing(out)) - {MARKER, "notes.txt", "embeddings/mine.safetensors"}


def test_project_and_its_stage_folders_are_refused(
    fitted_copy: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = listing(fitted_copy)
    monkeypatch.chdir(fitted_copy)
    for out in (".", "images", "images/new", "discovery", "runs", "runs/r1", "runs/r1/samples"):
        for force in ([], ["--force"]):
            code, err = export(runner, fitted_copy, "--out", out, *force)
            assert code == 1, (out, err)
            assert "which creaturekit manages" in err and "leave out --out" in err
    code, err = export(runner, fitted_copy, "--out", "creaturekit.toml", "--force")
    assert code == 1 and "is a file" in err
    assert listing(fitted_copy) == before
    assert not (fitted_copy / "images" / "new").exists()
    # Another project's folders are refused alike.
    other = fitted_copy.parent / "other"
    shutil.copytree(fitted_copy / "images", other / "images")
    shutil.copy(fitted_copy / "creaturekit.toml", other)
    code, err = export(runner, fitted_copy, "--out", str(other / "images"), "--force")
    assert code == 1 and f"inside images/ of the project {other.resolve()}" in err


def test_reexport_replaces_only_its_own_files(
    fitted_copy: Path, tmp_path: Path, runner: CliRunner
) -> None:
    out = tmp_path / "for-webui"
    assert export(runner, fitted_copy, "--out", str(out))[0] == 0
    first = marker(out)["files"]
    (out / "notes.txt").write_text("added by the user")
    code, err = export(runner, fitted_copy, "--out", str(out), "--format", "a1111")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "added by the user"
    assert not (out / "pytorch_lora_weights.safetensors").exists()  # the previous export's
    assert (out / "r1_lora.safetensors").is_file()
    files = marker(out)["files"]
    assert files != first and set(listing(out)) == {*files, MARKER, "notes.txt"}  # type: ignore[misc]


def test_default_location_and_an_interrupted_export(
    fitted_copy: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = fitted_copy / "runs" / "r1" / "export-diffusers"
    assert export(runner, fitted_copy)[0] == 0
    (default / MARKER).unlink()  # an export made before markers existed
    code, err = export(runner, fitted_copy, "--run", "r1")
    assert code == 0, err
    assert marker(default)["complete"] is True

    save = fsutil.save_safetensors
    written: list[Path] = []

    def fail_third(tensors: dict[str, object], path: Path, metadata: object = None) -> None:
        if len(written) == 2:
            raise OSError("No space left on device")
        written.append(path)
        save(tensors, path)

    out = fitted_copy.parent / "export"
    with monkeypatch.context() as patch:
        patch.setattr(fsutil, "save_safetensors", fail_third)
        with pytest.raises(OSError, match="No space"):
            export_run(open_project(fitted_copy), out=out)
    saved = marker(out)
    assert saved["complete"] is False  # the marker never claims a half export
    assert set(listing(out)) - {MARKER} <= set(saved["files"])  # type: ignore[arg-type]
    code, err = export(runner, fitted_copy, "--out", str(out))  # finishes without --force
    assert code == 0, err
    assert marker(out)["complete"] is True


def test_run_name_must_be_a_plain_name(fitted_copy: Path, runner: CliRunner) -> None:
    outside = fitted_copy.parent / "elsewhere"
    shutil.copytree(fitted_copy / "runs" / "r1", outside)
    code, err = export(
        runner, fitted_copy, "--run", "../../elsewhere", "--out", str(fitted_copy / "x")
    )
    assert code == 1 and "Run name '../../elsewhere' is not allowed" in err
    assert not (fitted_copy / "x").exists()
