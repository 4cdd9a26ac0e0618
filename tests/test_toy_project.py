"""`init --example toy`: a ready project with images, ground truth and offline settings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from creaturekit import constants as C
from creaturekit.cli import app
from creaturekit.config import Config
from creaturekit.errors import ProjectExistsError, StageMissingError
from creaturekit.project import init_project, open_project
from creaturekit.toy.dataset import (
    TOY_GUIDANCE,
    TOY_NEGATIVE,
    TOY_TEMPLATE,
    create_toy_project,
    load_ground_truth,
)
from creaturekit.toy.world import PARTS, SCENES, ToyWorldError, is_novel

TINY = {"species": 5, "per_species": 2, "size": 32, "novel_images": 1}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / C.IMAGES_DIR).rglob("*"))
        if p.is_file()
    }


def test_toy_project_holds_complete_ground_truth(tmp_path: Path) -> None:
    project = create_toy_project(tmp_path / "toy", **TINY)
    records = project.manifest()
    truth = load_ground_truth(project)
    assert len(records) == 5 * 2 + len(truth.world.novel)
    assert sorted(truth.rows) == [r.id for r in records]
    for r in records:
        row = truth.rows[r.id]
        assert r.dataset == "toy" and row["file"] == r.file and r.split == row["split"]
        assert set(row["variants"]) == set(PARTS) == set(row["visible"])
        assert 0 <= row["scene"] < len(SCENES)
        with Image.open(project.image_path(r)) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (32, 32)
        mask = truth.mask(r.id)
        assert mask.shape == (32, 32) and mask.max() <= len(PARTS)
        for i, part in enumerate(PARTS):
            if row["visible"][part]:
                assert (mask == i + 1).any()
        points = project.keypoints()[r.id]  # each visible part's centre, on the part
        assert set(points) == {p for i, p in enumerate(PARTS) if (mask == i + 1).any()}
        for part, (x, y) in points.items():
            assert mask[int(y), int(x)] == PARTS.index(part) + 1
        if r.split == "train":
            species = truth.world.species[row["species"]]
            assert r.label == f"species-{row['species']:02d}" and row["novel"] is None
        else:
            species = truth.world.novel[row["novel"]]
            assert r.label.startswith("novel-") and is_novel(species, truth.world.species)
        assert tuple(row["variants"][p] for p in PARTS) == species
    assert truth.size == 32
    world = json.loads((project.images_dir / "toy" / "world.json").read_text())
    assert world["variants"]["head"][0]["text"].endswith("head")
    config = open_project(project.root).config
    assert config.discover.backend == "effnet-kmeans" and config.discover.parts == len(PARTS)
    assert config.fit.preset == "toy" and config.fit.model == "toy"
    # the demo's 960 training images all teach its 8 sub-concepts per part (no sample)
    assert config.discover.subconcept_points * config.discover.subconcepts >= 24 * 40
    assert config.mix.negative == TOY_NEGATIVE != Config().mix.negative  # written to the toml
    assert config.mix.guidance == TOY_GUIDANCE != Config().mix.guidance
    assert config.mix.template == TOY_TEMPLATE != Config().mix.template
    assert not any(Path(r["mask"]).is_absolute() for r in truth.rows.values())


def test_same_seed_gives_same_bytes(tmp_path: Path) -> None:
    a = create_toy_project(tmp_path / "a", seed=5, **TINY)
    b = create_toy_project(tmp_path / "b", seed=5, **TINY)
    c = create_toy_project(tmp_path / "c", seed=6, **TINY)
    assert _files(a.root) == _files(b.root)
    assert _files(a.root) != _files(c.root)


def test_force_replaces_the_toy_set_and_keeps_other_images(
    tmp_path: Path, image_folder: Path
) -> None:
    init_project(tmp_path / "p", images=image_folder)
    with pytest.raises(ProjectExistsError):
        create_toy_project(tmp_path / "p", **TINY)
    create_toy_project(tmp_path / "p", force=True, **TINY)
    project = create_toy_project(tmp_path / "p", force=True, **{**TINY, "per_species": 1})
    records = project.manifest()
    assert sum(r.dataset == "folder" for r in records) == 6
    toy = [r for r in records if r.dataset == "toy"]
    assert len(toy) == 5 + len(load_ground_truth(project).world.novel)
    assert len(list((project.images_dir / "toy" / "masks").glob("*.png"))) == len(toy)
    assert project.config.discover.backend != "effnet-kmeans"  # settings kept with --force


def test_bad_requests_are_clear(tmp_path: Path, image_folder: Path) -> None:
    with pytest.raises(ToyWorldError, match="px"):
        create_toy_project(tmp_path / "x", size=8)
    with pytest.raises(ToyWorldError, match="species"):
        create_toy_project(tmp_path / "x", species=100)
    assert not (tmp_path / "x").exists()
    with pytest.raises(StageMissingError, match="--example toy"):
        load_ground_truth(init_project(tmp_path / "plain", images=image_folder))


def test_cli_init_example_toy(tmp_path: Path, runner: CliRunner) -> None:
    args = ["init", str(tmp_path / "demo"), "--example", "toy", "--species", "5"]
    result = runner.invoke(app, [*args, "--per-species", "1", "--size", "32", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == len(open_project(tmp_path / "demo").manifest()) > 5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--example", "dogs"], "Unknown example 'dogs'; valid examples: toy."),
        (["--example", "toy", "--images", "."], "Use either --example or --images, not both."),
        (["--example", "toy", "--size", "8"], "Toy images are 32 to 512 px, not 8."),
    ],
)
def test_cli_init_example_errors(
    tmp_path: Path, runner: CliRunner, extra: list[str], message: str
) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "d"), *extra])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "d").exists()


def test_cli_subprocess_creates_a_toy_project(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "creaturekit", "init", str(tmp_path / "t"), "--example", "toy",
         "--species", "6", "--per-species", "1", "--size", "32", "--seed", "3", "--quiet"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    project = open_project(tmp_path / "t")
    assert {r.label for r in project.images("train")} == {f"species-{i:02d}" for i in range(6)}
    assert np.asarray(load_ground_truth(project).mask(1)).shape == (32, 32)


def test_parts_auto_name_after_the_toy_keypoints(
    discovered: Path, tmp_path: Path, runner: CliRunner
) -> None:
    root = tmp_path / "toy"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs", "eval", "mixes"))
    result = runner.invoke(app, ["parts", "auto-name", "-C", str(root)])
    assert result.exit_code == 0, result.output
    names = open_project(root).config.parts.names
    assert names and set(names.values()) <= set(PARTS) and len(set(names.values())) == len(names)
    assert all(f"{i} -> {n}" in result.stdout for i, n in names.items())
    # names from an earlier discovery that this one gives other parts (swapped) are replaced
    first, second = sorted(names)[:2]
    project = open_project(root)
    project.config.parts.names = {first: names[second], second: names[first], "99": "keep"}
    project.save_config()
    result = runner.invoke(app, ["parts", "auto-name", "-C", str(root)])
    assert result.exit_code == 0, result.output
    assert open_project(root).config.parts.names == {str(i): n for i, n in names.items()} | {
        "99": "keep"
    }
    (root / C.IMAGES_DIR / C.KEYPOINTS_NAME).unlink()
    result = runner.invoke(app, ["parts", "auto-name", "-C", str(root)])
    assert result.exit_code == 0 and "No keypoints" in result.stdout
