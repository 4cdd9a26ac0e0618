"""dino-kmeans with a tiny random DINOv2, the discover/parts commands and the stored result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load
from typer.testing import CliRunner

from creaturekit.cli import app
from creaturekit.discovery.checkpoint import CHECKPOINT_FILE
from creaturekit.discovery.conformance import check_discoverer
from creaturekit.discovery.dino import DinoKMeans
from creaturekit.discovery.discover import load_discoverer, load_result
from creaturekit.errors import ModelNotFoundError
from creaturekit.project import init_project, open_project

OPTS = ["--parts", "2", "--subconcepts", "2", "--bg-subconcepts", "2", "--image-size", "32"]


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 1-layer DINOv2 saved like a downloaded one."""
    from tests.tiny_sd import save_tiny_dinov2

    return Path(save_tiny_dinov2(tmp_path_factory.mktemp("tiny-dinov2")))


def creature_images(folder: Path, n: int = 8) -> list[Path]:
    """Small pictures: a coloured square 'body' with a 'head' on a plain background."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        a = np.full((64, 64, 3), rng.integers(0, 256, 3), np.uint8)
        a[20:52, 16:48] = rng.integers(0, 256, 3)
        a[12:24, 24:40] = rng.integers(0, 256, 3)
        paths.append(folder / f"img{i}.png")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(paths[-1])
    return paths


def test_dino_kmeans_conforms(tiny_dino: Path, tmp_path: Path) -> None:
    images = creature_images(tmp_path / "images")
    check_discoverer(
        lambda seed: DinoKMeans(
            str(tiny_dino), parts=2, subconcepts=2, bg_subconcepts=2, image_size=32, seed=seed
        ),
        images,
        tmp_path,
    )


def test_feature_cache_skips_extraction(tiny_dino: Path, tmp_path: Path) -> None:
    images = creature_images(tmp_path / "images", n=4)
    first = DinoKMeans(str(tiny_dino), image_size=32).extract(images, tmp_path / "cache")
    second = DinoKMeans(str(tiny_dino), image_size=32)
    second._embed = None  # type: ignore[assignment,method-assign]  # must not be called
    np.testing.assert_array_equal(second.extract(images, tmp_path / "cache"), first)
    assert first.dtype == np.float16


def test_missing_weights_offline_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE at import, which may predate the env fixture.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    images = creature_images(tmp_path / "images", n=2)
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        DinoKMeans("facebook/dinov2-base").fit(images)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    creature_images(tmp_path / "src")
    init_project(tmp_path / "proj", images=tmp_path / "src")
    return tmp_path / "proj"


def test_discover_parts_and_names(runner: CliRunner, project: Path, tiny_dino: Path) -> None:
    res = runner.invoke(app, ["discover", "-C", str(project), "--model", str(tiny_dino), *OPTS])
    assert res.exit_code == 0, res.output
    folder = project / "discovery"
    for name in (
        "result.json",
        "codes.jsonl",
        "masks.safetensors",
        "centroids.safetensors",
        "config.json",
        "report.html",
        "report/overview.png",
        "report/part0.png",
    ):
        assert (folder / name).is_file(), name
    assert not list(folder.glob(".staging-*"))
    res = runner.invoke(app, ["parts", "-C", str(project), "--json"])
    parts = json.loads(res.stdout)
    assert [p["name"] for p in parts] == ["part0", "part1", "bg"]
    assert {"index", "name", "is_background", "subconcepts", "coverage"} <= set(parts[0])
    assert runner.invoke(app, ["parts", "name", "1", "head", "-C", str(project)]).exit_code == 0
    assert "head" in (project / "creaturekit.toml").read_text()
    parts = json.loads(runner.invoke(app, ["parts", "-C", str(project), "--json"]).stdout)
    assert parts[1]["name"] == "head"
    res = runner.invoke(app, ["parts", "name", "2", "sky", "-C", str(project)])
    assert res.exit_code == 1 and "background" in res.output
    res = runner.invoke(app, ["parts", "name", "0", "two words", "-C", str(project)])
    assert res.exit_code == 1 and "single word" in res.output

    result = load_result(open_project(project))
    assert result.masks.shape == (8, 4, 4) and result.masks.dtype == np.uint8
    assert (
        result.facing["groupings"] >= 1
        and "<h2>Facing</h2>" in (folder / "report.html").read_text()
    )
    assert len(result.codes) == 8 and result.codes[0]["caption"].startswith("<")
    coding = load_discoverer(folder).encode([project / "images" / result.codes[0]["file"]])
    assert coding.masks.shape == (1, 16)


def test_interrupted_discovery_keeps_previous_result_and_resumes(
    runner: CliRunner, project: Path, tiny_dino: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["discover", "-C", str(project), "--model", str(tiny_dino), "--no-report", *OPTS]
    assert runner.invoke(app, args).exit_code == 0
    folder = project / "discovery"
    before = (folder / "result.json").read_text()
    assert not (folder / CHECKPOINT_FILE).exists()  # removed once the result is written

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("creaturekit.discovery.hierarchy.code_all", interrupted)
    res = runner.invoke(app, [*args, "--seed", "3"])
    assert res.exit_code == 130
    assert (folder / "result.json").read_text() == before
    assert not (project / ".creaturekit.lock").exists()
    assert (folder / CHECKPOINT_FILE).is_file()  # the centroids learnt before the stop

    monkeypatch.undo()
    monkeypatch.setattr("creaturekit.discovery.hierarchy.learn", interrupted)  # not again
    res = runner.invoke(app, [*args, "--seed", "3", "--resume"])
    assert res.exit_code == 0 and "Resumed: the centroids learnt" in res.output
    proj = open_project(project)
    resumed = load_result(proj)
    assert resumed.timing["resumed"] and resumed.params["seed"] == 3
    assert not (folder / CHECKPOINT_FILE).exists()
    monkeypatch.undo()
    assert runner.invoke(app, [*args, "--seed", "3"]).exit_code == 0  # from scratch
    fresh = load_result(proj)
    assert not fresh.timing["resumed"] and fresh.codes == resumed.codes
    np.testing.assert_array_equal(fresh.masks, resumed.masks)
    # a checkpoint of other settings is not resumed from
    monkeypatch.setattr("creaturekit.discovery.hierarchy.code_all", interrupted)
    assert runner.invoke(app, [*args, "--seed", "4"]).exit_code == 130
    monkeypatch.undo()
    assert runner.invoke(app, [*args, "--seed", "5", "--resume"]).exit_code == 0
    assert not load_result(proj).timing["resumed"]


def test_update_codes_new_images_with_the_existing_centroids(
    runner: CliRunner, project: Path, tiny_dino: Path, tmp_path: Path
) -> None:
    args = ["discover", "-C", str(project), "--model", str(tiny_dino), "--no-report", *OPTS]
    assert runner.invoke(app, args).exit_code == 0
    folder = project / "discovery"
    proj = open_project(project)
    old = load_result(proj)
    centroids = load((folder / "centroids.safetensors").read_bytes())
    creature_images(tmp_path / "more", n=12)  # the 8 imported ones and 4 new
    init_project(project, images=tmp_path / "more", force=True)
    res = runner.invoke(app, ["discover", "-C", str(project), "--update", "--no-report"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "4 new image(s) coded with the existing centroids" in text
    assert "refit advised 4 of the 12 images (33%) are new" in text
    new = load_result(proj)
    assert len(new.codes) == 12 and new.codes[:8] == old.codes
    np.testing.assert_array_equal(new.masks[:8], old.masks)
    assert new.fitted_stamp == old.stamp != new.stamp
    assert new.images_hash == proj.images_hash() != old.images_hash
    discoverer = load_discoverer(folder)
    added = [project / "images" / row["file"] for row in new.codes[8:]]
    coding = discoverer.encode(added)
    assert [row["codes"] for row in new.codes[8:]] == [
        {str(m): int(k) for m, k in enumerate(codes) if k >= 0} for codes in coding.codes
    ]
    np.testing.assert_array_equal(new.masks[8:].reshape(4, -1), coding.masks)
    with safe_open(str(folder / "centroids.safetensors"), "numpy") as now:
        assert sorted(now.keys()) == sorted(centroids)
        for name in centroids:
            np.testing.assert_array_equal(now.get_tensor(name), centroids[name])
    assert any("Updated: 4 new image(s)" in note for note in new.notes)

    res = runner.invoke(app, ["discover", "-C", str(project), "--update"])
    assert res.exit_code == 0 and "up to date" in res.output
    res = runner.invoke(app, ["discover", "-C", str(project), "--update", "--parts", "3"])
    assert res.exit_code == 1 and "drop --parts" in " ".join(res.output.split())
    res = runner.invoke(app, ["discover", "-C", str(project), "--update", "--num-processes", "2"])
    assert res.exit_code == 1 and "runs in one process" in res.output


def test_kmeans_engine_setting_is_used_and_recorded(
    runner: CliRunner, project: Path, tiny_dino: Path
) -> None:
    pytest.importorskip("faiss", reason="the faiss extra is not installed")
    proj = open_project(project)
    proj.config.discover.kmeans = "faiss"
    proj.save_config()
    args = ["discover", "-C", str(project), "--model", str(tiny_dino), "--no-report", *OPTS]
    assert runner.invoke(app, args).exit_code == 0
    result = json.loads((project / "discovery" / "result.json").read_text())
    assert result["scale"] == {
        "images": 8,
        "regions_from": 8,
        "subconcepts_from": 8,
        "grouping": "faiss",
    }
    proj.config.discover.kmeans = "sklearn"
    proj.save_config()
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "Unknown k-means engine 'sklearn'" in res.output


def test_update_before_discover_is_explained(runner: CliRunner, project: Path) -> None:
    res = runner.invoke(app, ["discover", "-C", str(project), "--update"])
    assert res.exit_code == 1 and "run `creaturekit discover` first" in res.output


def test_two_processes_extract_what_one_does(
    tiny_dino: Path, project: Path, tmp_path: Path
) -> None:
    """`discover --num-processes 2` (accelerate, gloo on the CPU): each process extracts
    its share; the features and the result equal a single process's."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copytree(project, tmp_path / "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "creaturekit", "discover", "--model", str(tiny_dino)]
    base += ["--no-report", "--device", "cpu", *OPTS]
    two = subprocess.run(
        [*base, "-C", str(project), "--num-processes", "2"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    for rank in (0, 1):
        assert f"Process {rank} of 2: extracted the features of 4 image(s)" in two.stderr
    one = subprocess.run(
        [*base, "-C", str(tmp_path / "single")],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    features = project / "discovery" / "features"
    files = sorted(p.relative_to(project) for p in features.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".safetensors"]) == 8
    for name in files:
        assert (project / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    a, b = load_result(open_project(project)), load_result(open_project(tmp_path / "single"))
    assert a.codes == b.codes
    np.testing.assert_array_equal(a.masks, b.masks)
    mine = load((project / "discovery" / "centroids.safetensors").read_bytes())
    theirs = load((tmp_path / "single/discovery/centroids.safetensors").read_bytes())
    assert mine.keys() == theirs.keys()
    for name, tensor in mine.items():
        np.testing.assert_array_equal(tensor, theirs[name])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "nope"], "Unknown discovery backend 'nope'"),
        (["--parts", "400"], "too few for 400 parts"),
        (["--option", "pretrained=x"], "has no option pretrained"),
        (["--option", "nokey"], "expects KEY=VALUE"),
        (["--option", 'position_weight="far"'], "takes a float"),
    ],
)
def test_discover_bad_input(
    runner: CliRunner, project: Path, tiny_dino: Path, args: list[str], message: str
) -> None:
    res = runner.invoke(
        app,
        ["discover", "-C", str(project), "--model", str(tiny_dino), "--image-size", "32", *args],
    )
    assert res.exit_code == 1
    assert message in " ".join(res.output.split())


def test_discover_without_images_and_parts_before_discover(
    runner: CliRunner, tmp_path: Path
) -> None:
    init_project(tmp_path / "empty")
    res = runner.invoke(app, ["discover", "-C", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "no 'train' images" in " ".join(res.output.split())
    res = runner.invoke(app, ["parts", "-C", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "creaturekit discover" in res.output


def test_a_toy_project_without_its_plugin_names_the_package(
    runner: CliRunner, discovered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init --example toy` then `discover` on the core install alone: one sentence that
    says which package gives the toy world's backend; discovery/ is left as it was."""
    root = tmp_path / "toy"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs", "mixes", "eval"))
    before = (root / "discovery" / "result.json").read_bytes()
    monkeypatch.setenv("CREATUREKIT_PLUGINS", "dino-kmeans")  # only the built-in backend
    res = runner.invoke(app, ["discover", "-C", str(root), "--no-report"])
    assert res.exit_code == 1, res.output
    message = " ".join(res.stderr.split())
    assert "'effnet-kmeans' comes with the plugin creaturekit-effnet" in message
    assert "pip install creaturekit-effnet" in message and message.count(". ") == 0
    assert (root / "discovery" / "result.json").read_bytes() == before


def test_backend_options_are_found_through_the_class_hierarchy() -> None:
    """A backend declares only the options it adds; every level's are its options."""
    from creaturekit_hdbscan.backend import DinoHDBSCAN

    base = DinoKMeans.option_defaults()
    assert base["model"] == "facebook/dinov2-base" and base["position_weight"] == 1.0
    found = DinoHDBSCAN.option_defaults()
    assert found == base | {"min_cluster_size": 5, "sample": 20_000}
    discoverer = DinoHDBSCAN(position_weight=0.25, sample=7)
    assert discoverer.get_params() == found | {"position_weight": 0.25, "sample": 7}


def test_any_backend_option_from_the_toml_and_the_command_line(
    runner: CliRunner, project: Path, tiny_dino: Path
) -> None:
    from creaturekit.discovery.discover import make_discoverer
    from creaturekit.project import open_project

    proj = open_project(project)
    proj.config.discover.options = {"position_weight": 0.5}
    proj.save_config()
    assert "position_weight = 0.5" in (project / "creaturekit.toml").read_text()
    proj = open_project(project)  # read back from the file
    assert make_discoverer(proj).position_weight == 0.5
    assert make_discoverer(proj, position_weight=0.25).position_weight == 0.25  # flag wins
    args = ["discover", "-C", str(project), "--model", str(tiny_dino), *OPTS, "--json"]
    res = runner.invoke(app, [*args, "-o", "position_weight=0.3"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["params"]["position_weight"] == 0.3
    for bad, said in [
        ({"colour_weight": 1.0}, "discover.options.colour_weight in creaturekit.toml is not"),
        ({"parts": 3}, "set parts in [discover] itself"),
        ({"position_weight": "far"}, "takes a float"),
    ]:
        proj.config.discover.options = bad
        proj.save_config()
        res = runner.invoke(app, args)
        assert res.exit_code == 1 and said in " ".join(res.stderr.split()), res.output
    listed = runner.invoke(app, ["plugins", "--options", "dino-kmeans", "--json"])
    assert json.loads(listed.stdout) == DinoKMeans.option_defaults()
