"""The one-command demo at tiny scale: every stage, the page, reuse, resume, no toy base."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from creaturekit import models
from creaturekit.cli import app
from creaturekit.demo import DONE, RESUMED, REUSED, SKIPPED, run_demo
from creaturekit.discovery.discover import load_result
from creaturekit.discovery.naming import part_table
from creaturekit.errors import ModelNotFoundError
from creaturekit.generation.mix import Mixer
from creaturekit.progress import quiet
from creaturekit.toy.world import PARTS
from creaturekit.training.trainer import FitInterrupted, Trainer

FIT = {
    "resolution": 16,
    "steps": 2,
    "batch_size": 2,
    "grad_accum": 1,
    "attn_resolution": 8,
    "checkpoint_every": 1,
    "sample_every": 0,
    "projector_depth": 2,
    "log_every": 1,
}
DISCOVER = {"parts": 2, "subconcepts": 2, "bg_subconcepts": 2, "image_size": 64}
SAMPLING = {"combinations": 2, "sample_steps": 2, "sample_size": 16}


def tiny_demo(folder: Path, model: Path | str, **options: Any) -> Any:
    """The demo on a 5-species toy world, a tiny base model and tiny sampling."""
    with quiet():
        return run_demo(
            folder,
            model=str(model),
            species=5,
            per_species=2,
            discover_options=DISCOVER,
            fit_options=options.pop("fit_options", FIT),
            **SAMPLING,
            **options,
        )


def page_links(page: Path) -> list[str]:
    return re.findall(r'(?:href|src)="([^"#]+)"', page.read_text(encoding="utf-8"))


def test_demo_end_to_end_then_reused_after_moving(
    tmp_path: Path, tiny_sd: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    demo = tiny_demo(tmp_path / "demo", tiny_sd, notify=lines.append)
    root = demo.project.root
    assert demo.stages == dict.fromkeys(("project", "discover", "fit", "mix", "eval"), DONE)
    assert len(lines) == 7 and lines[3].startswith("Fitting run 'demo'")
    names = demo.project.config.parts.names  # after the toy world's keypoints
    assert lines[2].startswith("Parts named") and names and set(names.values()) <= set(PARTS)
    assert (root / "discovery" / "report.html").is_file()
    assert (root / "runs" / "demo" / "mapper.safetensors").is_file()
    assert demo.metrics is not None and demo.metrics.run == "demo"
    assert (root / "eval" / "demo" / "metrics.json").is_file()
    # The mixes ask for part combinations no training image has.
    assert demo.mixes is not None and demo.mixes.parent == root / "mixes"
    records = [json.loads(p.read_text()) for p in sorted(demo.mixes.glob("mix-*.json"))]
    assert records and all((demo.mixes / f"mix-{i:03d}.png").is_file() for i in range(len(records)))
    result = load_result(demo.project)
    index = {p["name"]: str(p["index"]) for p in part_table(demo.project, result)}
    seen = {frozenset(row["codes"].items()) for row in result.codes}
    asked = [frozenset((index[c["part"]], c["code"]) for c in r["codes"]) for r in records]
    assert not seen & set(asked)
    assert len({json.dumps(r["codes"]) for r in records}) == len(records)
    # One page, relative links only, each to an existing file.
    assert demo.page == root / "index.html"
    links = page_links(demo.page)
    assert {"discovery/report/overview.png", "eval/demo/report.html"} <= set(links)
    assert sum(link.startswith("mixes/") and link.endswith(".png") for link in links) == len(
        records
    )
    assert all(not link.startswith(("/", "file:", "http")) for link in links)
    assert all((root / link).exists() for link in links)
    assert "toy base model" not in demo.page.read_text()

    # Moved elsewhere and run again (through the CLI): nothing is recomputed.
    moved = tmp_path / "elsewhere" / "demo"
    shutil.move(root, moved)
    (moved / "index.html").unlink()
    monkeypatch.setattr(Trainer, "fit", lambda self: pytest.fail("fit ran again"))
    monkeypatch.setattr(Mixer, "__init__", lambda *a, **k: pytest.fail("a model was loaded"))
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = runner.invoke(app, ["demo", str(moved), "--model", str(tiny_sd), "--open"])
    assert result.exit_code == 0, result.output
    assert "Fit: reusing runs/demo/" in result.stderr
    assert result.stdout.strip() == f"Demo page: {moved / 'index.html'}"
    assert opened == [(moved / "index.html").resolve().as_uri()]
    assert sorted(p.name for p in (moved / "mixes").iterdir()) == [demo.mixes.name]
    assert page_links(moved / "index.html") == links
    again = tiny_demo(moved, tiny_sd)
    assert set(again.stages.values()) == {REUSED}
    assert again.metrics == demo.metrics


def test_interrupted_fit_resumes(
    discovered: Path, tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "demo"
    shutil.copytree(discovered, folder, ignore=shutil.ignore_patterns("runs", "mixes", "eval"))
    fit = {**FIT, "steps": 3}
    step = Trainer._optimisation_step
    calls = []

    def interrupt_second_step(self: Trainer, cursor: Any) -> Any:
        calls.append(cursor)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return step(self, cursor)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_optimisation_step", interrupt_second_step)
        with pytest.raises(FitInterrupted, match="from step-000001 when the demo runs again"):
            tiny_demo(folder, tiny_sd, fit_options=fit)
    run = folder / "runs" / "demo"
    assert not (run / "mapper.safetensors").exists() and (run / "checkpoints").is_dir()
    assert not (folder / "index.html").exists()

    demo = tiny_demo(folder, tiny_sd, fit_options=fit)
    assert demo.stages["project"] == demo.stages["discover"] == REUSED
    assert demo.stages["fit"] == RESUMED and demo.stages["mix"] == demo.stages["eval"] == DONE
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3]
    assert (run / "mapper.safetensors").is_file() and demo.page.is_file()
    # The discovery of this project ran without its report: the page links only what exists.
    assert all((folder / link).exists() for link in page_links(demo.page))


def test_without_the_toy_base_model(
    discovered: Path, tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(models.BUNDLED, "toy", tmp_path / "no-toy-base")
    folder = tmp_path / "demo"
    shutil.copytree(discovered, folder, ignore=shutil.ignore_patterns("runs", "mixes", "eval"))
    demo = tiny_demo(folder, "toy")
    assert demo.stages == {
        "project": REUSED,
        "discover": REUSED,
        **dict.fromkeys(("fit", "mix", "eval"), SKIPPED),
    }
    message = demo.missing_model
    assert message is not None and message.count(". ") == 0
    assert "python -m tools.toy.train_base" in message and "--model PATH" in message
    assert demo.page.is_file() and "toy base model is not" in demo.page.read_text()
    assert not (folder / "runs").exists()

    result = runner.invoke(app, ["demo", str(folder)])
    assert result.exit_code == 0, result.output
    assert "The toy base model is not in this copy" in result.stderr
    assert result.stdout.strip() == f"Demo page: {folder / 'index.html'}"
    with pytest.raises(ModelNotFoundError, match="train_base"):
        tiny_demo(folder, "toy", full=True)
    result = runner.invoke(app, ["demo", str(folder), "--full", "--quiet"])
    assert result.exit_code == 1 and "Error: The toy base model" in result.stderr
    result = runner.invoke(app, ["demo", str(folder), "--model", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_a_folder_with_other_images_is_refused(
    tmp_path: Path, image_folder: Path, runner: CliRunner
) -> None:
    runner.invoke(app, ["init", str(tmp_path / "p"), "--images", str(image_folder)])
    result = runner.invoke(app, ["demo", str(tmp_path / "p")])
    assert result.exit_code == 1 and "images of its own" in result.stderr


def test_demo_runs_on_the_bundled_toy_base_model(tmp_path: Path) -> None:
    """The shipped ``--model toy`` pipeline through every stage (2 fit steps, 64 px)."""
    with quiet():
        demo = run_demo(
            tmp_path / "demo",
            species=5,
            per_species=2,
            discover_options=DISCOVER,
            fit_options=FIT | {"resolution": 64, "attn_resolution": 16},
            mixes=2,
            combinations=2,
            sample_steps=2,
        )
    assert demo.missing_model is None
    assert demo.stages == dict.fromkeys(("project", "discover", "fit", "mix", "eval"), DONE)
    config = (demo.project.runs_dir / "demo" / "config.toml").read_text()
    assert 'model = "toy"' in config
    assert demo.mixes is not None
    records = [json.loads(p.read_text()) for p in sorted(demo.mixes.glob("mix-*.json"))]
    names = {p["name"] for p in part_table(demo.project, load_result(demo.project))}
    assert records and all({c["part"] for c in r["codes"]} <= names for r in records)
    assert all(r["model"] == "toy" and not r["blank"] for r in records)
