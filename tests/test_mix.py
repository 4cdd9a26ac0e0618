"""mix by part name on a tiny fitted run: requests, reproducibility, outputs, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from creaturekit.cli import app
from creaturekit.cli.mix import parse_part_options
from creaturekit.errors import StageMissingError
from creaturekit.generation.requests import PartRequestError
from creaturekit.generation.stage import Mixer, mix, sweep
from creaturekit.project import open_project

TINY = {
    "resolution": 16,
    "steps": 2,
    "batch_size": 2,
    "grad_accum": 1,
    "attn_resolution": 8,
    "checkpoint_every": 2,
    "sample_every": 0,
    "projector_depth": 2,
}
FAST = {"steps": 2, "size": 16}


@pytest.fixture(scope="module")
def fitted(discovered: Path, tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from creaturekit.progress import quiet
    from creaturekit.training.stage import fit

    root = tmp_path_factory.mktemp("mix") / "proj"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs"))
    with quiet():
        fit(open_project(root), preset="toy", run="r1", model=str(tiny_sd), **TINY)
    return root


def test_part_options_and_sweep() -> None:
    parts = parse_part_options(["--head", "42", "--wing=10,20", "--head", "7"])
    assert parts == {"head": [[42], [7]], "wing": [[10, 20]]}
    assert sweep(parts) == [{"head": [42, 7], "wing": [10]}, {"head": [42, 7], "wing": [20]}]
    with pytest.raises(PartRequestError, match="comma-separated"):
        parse_part_options(["--head", "x"])
    with pytest.raises(PartRequestError, match="--NAME CODE"):
        parse_part_options(["head", "1"])


def test_mix_by_name_is_reproducible(fitted: Path) -> None:
    project = open_project(fitted)
    mixer = Mixer(project)
    first = mixer({"part0": [1], "bg": [0]}, seed=3, **FAST)
    again = mixer({"part0": [1], "bg": [0]}, seed=3, **FAST)
    other = mixer({"part0": [0], "bg": [0]}, seed=3, **FAST)
    a, b, c = (np.asarray(m.images[0]) for m in (first, again, other))
    assert a.shape == (16, 16, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    record = first.records[0]
    assert record["codes"] == [{"part": "part0", "code": 1}, {"part": "bg", "code": 0}]
    assert record["prompt"] == "a photo of a <part_0> <part_2> creature"
    assert record["seed"] == 3 and record["run"] == "r1"


def test_prompt_form_blend_and_errors(fitted: Path) -> None:
    mixer = Mixer(open_project(fitted))
    text, requests = mixer.requests(prompt="a <part0:1> <part1:0> creature in snow")
    assert text == "a <part_0> <part_1> creature in snow"
    assert [(r.name, r.code) for r in requests] == [("part0", 1), ("part1", 0)]
    text, requests = mixer.requests({"part0": [0, 1]})
    assert text.count("<part_0>") == 2  # the same part twice blends two codes
    with pytest.raises(PartRequestError, match=r"Unknown part 'wing'.*part0 \(0-1\)"):
        mixer.requests({"wing": [1]})
    with pytest.raises(PartRequestError, match="use 0 to 1"):
        mixer.requests({"part0": [5]})
    with pytest.raises(PartRequestError, match="empty"):
        mixer.requests(prompt="  ")
    with pytest.raises(PartRequestError, match="at least one part"):
        mixer.requests({})


def test_mix_writes_pngs_sidecars_and_sheet(fitted: Path) -> None:
    project = open_project(fitted)
    result = mix(project, {"part0": [[0, 1]]}, n=2, **FAST)
    assert result.folder is not None and len(result.images) == 4
    files = sorted(p.name for p in result.folder.iterdir())
    assert files == [
        "contact-sheet.png",
        *[f"mix-{i:03d}.{e}" for i in range(4) for e in ("json", "png")],
    ]
    sidecar = json.loads((result.folder / "mix-003.json").read_text())
    assert sidecar["codes"] == [{"part": "part0", "code": 1}] and sidecar["seed"] == 1
    assert "blank" in sidecar


def test_mix_before_fit(discovered: Path, tmp_path: Path) -> None:
    root = tmp_path / "nofit"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs"))
    with pytest.raises(StageMissingError, match="no fitted run"):
        Mixer(open_project(root))


def test_mix_cli(fitted: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["mix", "-C", str(fitted), "--part0", "1", "--bg", "0", "--steps", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == 1 and Path(data["folder"]).is_dir()
    bad = runner.invoke(app, ["mix", "-C", str(fitted), "--wing", "3"])
    assert bad.exit_code == 1 and "Unknown part 'wing'" in bad.stderr
