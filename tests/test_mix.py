"""mix by part name on a tiny fitted run: requests, reproducibility, outputs, bad input."""

from __future__ import annotations

import html
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from creaturekit.cli import app
from creaturekit.cli.mix import parse_part_options
from creaturekit.errors import CreatureKitError, StageMissingError
from creaturekit.evaluation.evaluate import load_metrics
from creaturekit.generation.mix import Mixer, mix, sweep
from creaturekit.generation.requests import PartRequestError
from creaturekit.project import open_project
from creaturekit.training.distinctness import not_distinct
from tests.helpers import GuardedRunner

FAST = {"steps": 2, "size": 16}


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
    said: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = said.append  # type: ignore[method-assign]
    logging.getLogger("diffusers").addHandler(listener)
    try:
        mixer = Mixer(project)
    finally:
        logging.getLogger("diffusers").removeHandler(listener)
    assert not [r for r in said if "No LoRA keys" in r.getMessage()]  # the LoRA is UNet-only
    first = mixer({"part0": [1], "bg": [0]}, seed=3, **FAST)
    again = mixer({"part0": [1], "bg": [0]}, seed=3, **FAST)
    other = mixer({"part0": [0], "bg": [0]}, seed=3, **FAST)
    a, b, c = (np.asarray(m.images[0]) for m in (first, again, other))
    assert a.shape == (16, 16, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    record = first.records[0]
    assert record["codes"] == [{"part": "part0", "code": 1}, {"part": "bg", "code": 0}]
    assert record["prompt"] == "<part_0> <part_2>"  # a toy project's template: the tokens
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


def test_requests_are_checked_before_any_model_is_loaded(
    fitted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown part names, out-of-range codes (also deep in a sweep) and malformed prompts
    are refused by ``mix`` at once, not after loading the base model."""

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the requests were checked")

    monkeypatch.setattr("creaturekit.conditioning.base_model.load_base_model", no_loading)
    project = open_project(fitted)
    with pytest.raises(PartRequestError, match="Unknown part 'wing'"):
        mix(project, {"wing": [[1]]}, write=False)
    with pytest.raises(PartRequestError, match="use 0 to 1"):
        mix(project, {"part0": [[0, 1, 5]]}, write=False)  # the sweep's third image
    with pytest.raises(PartRequestError, match="is not a part request"):
        mix(project, prompt="a <part0:abc> creature", write=False)


def test_mix_combinations_are_different_creatures(fitted: Path) -> None:
    """``combinations``: each listed creature gets its own seeds (seed + j * n), the same
    images as asking for each one alone; one mixes/ folder holds them all."""
    project = open_project(fitted)
    wanted = [{"part0": [1], "part1": [0]}, {"part0": [0], "part1": [1]}]
    both = mix(project, combinations=wanted, n=2, seed=5, **FAST)
    assert both.folder is not None and len(list(both.folder.glob("mix-*.png"))) == 4
    assert [r["seed"] for r in both.records] == [5, 6, 7, 8]
    alone = mix(project, {"part0": [[0]], "part1": [[1]]}, n=2, seed=7, write=False, **FAST)
    for a, b in zip(alone.images, both.images[2:], strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(CreatureKitError, match="either combinations or parts"):
        mix(project, {"part0": [[0]]}, combinations=wanted, write=False)


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
    runner = GuardedRunner()
    result = runner.invoke(
        app, ["mix", "-C", str(fitted), "--part0", "1", "--bg", "0", "--steps", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == 1 and Path(data["folder"]).is_dir()
    bad = runner.invoke(app, ["mix", "-C", str(fitted), "--wing", "3"])
    assert bad.exit_code == 1 and "Unknown part 'wing'" in bad.stderr


def test_export_round_trip_diffusers(fitted: Path, tiny_sd: Path) -> None:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from creaturekit.conditioning.pipeline import part_prompt_embeddings
    from creaturekit.conditioning.tokens import tokenize
    from creaturekit.generation.export import export_run

    project = open_project(fitted)
    folder = export_run(project, "diffusers")
    assert "<r1_part0_1>" in (folder / "README.md").read_text()
    mixer = Mixer(project)
    text, requests = mixer.requests({"part0": [1], "bg": [0]})
    ours = part_prompt_embeddings(
        mixer.conditioning, mixer.mapper, [text], [[r.code for r in requests]]
    ).hidden
    plain = StableDiffusionPipeline.from_pretrained(
        tiny_sd, safety_checker=None, requires_safety_checker=False
    )
    plain.load_lora_weights(folder)
    files = sorted((folder / "embeddings").glob("*.safetensors"))
    assert len(files) == 2 + 2 + 2
    plain.load_textual_inversion([str(f) for f in files])
    prompt = "<r1_part0_1> <r1_bg_0>"  # the mixer's text in the toy template, exported tokens
    with torch.no_grad():
        theirs = plain.text_encoder(tokenize(plain.tokenizer, [prompt]))[0]
    assert torch.allclose(ours, theirs, atol=1e-6)
    plain.scheduler = DDIMScheduler.from_config(plain.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    image = plain(
        prompt,
        negative_prompt=project.config.mix.negative,
        guidance_scale=project.config.mix.guidance,
        num_inference_steps=2,
        height=16,
        width=16,
        generator=torch.Generator().manual_seed(5),
    ).images[0]
    mixed = mixer({"part0": [1], "bg": [0]}, seed=5, **FAST).images[0]
    assert np.abs(np.asarray(image, np.int16) - np.asarray(mixed, np.int16)).max() <= 1


def test_export_a1111_lora_loads_like_the_diffusers_one(fitted: Path, tiny_sd: Path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from creaturekit.generation.export import export_run

    project = open_project(fitted)
    folder = export_run(project, "a1111", out=fitted / "a1111-export")
    emb = load_file(str(folder / "embeddings" / "r1_part1_0.safetensors"))
    assert list(emb) == ["emb_params"] and emb["emb_params"].shape == (1, 32)
    kohya = load_file(str(folder / "r1_lora.safetensors"))
    assert any(k.startswith("lora_unet_") and k.endswith(".lora_down.weight") for k in kohya)
    pipes = []
    for source in (project.runs_dir / "r1", folder / "r1_lora.safetensors"):
        pipe = StableDiffusionPipeline.from_pretrained(
            tiny_sd, safety_checker=None, requires_safety_checker=False
        )
        pipe.load_lora_weights(source)
        pipe.fuse_lora()
        pipes.append(dict(pipe.unet.named_parameters()))
    names = [n for n in pipes[0] if "lora" not in n]
    assert all(torch.allclose(pipes[0][n], pipes[1][n], atol=1e-6) for n in names)
    bad = GuardedRunner().invoke(app, ["export", "-C", str(fitted), "--format", "ckpt"])
    assert bad.exit_code == 1 and "diffusers or a1111" in bad.stderr


def test_combinations_seen_and_novel() -> None:
    import random

    from creaturekit.evaluation.combinations import novel_combinations, seen_combinations

    rows = [{0: 0, 1: 0, 2: 0}, {0: 1, 1: 1, 2: 1}, {0: 0, 1: 1}, {0: 1, 1: 0, 2: 1}]
    seen = seen_combinations(rows, 10, random.Random(0))
    assert len(seen) == 4 and all(c in rows for c in seen)
    novel = novel_combinations(rows, 5, random.Random(0))
    assert novel and all(c not in rows for c in novel)
    assert len({tuple(sorted(c.items())) for c in novel}) == len(novel)


def test_recoding_scores_known_answer() -> None:
    from creaturekit.evaluation.recoding import recoding_scores

    centroids = [np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32)]
    codes = np.array([[0, 1], [1, -1]])
    feats = np.array([[[1, 0], [0, 2]], [[1, 1], [0, 0]]], np.float32)
    scores = recoding_scores(
        [{0: 0, 1: 1}, {0: 0, 1: 1}], codes, feats, centroids, {0: "head", 1: "bg"}
    )
    assert scores.emr == 0.5  # 2 of 4 requested codes recovered
    assert scores.per_part["head"].emr == 0.5 and scores.per_part["bg"].emr == 0.5
    assert scores.per_part["head"].requests == 2
    assert np.isclose(scores.cosim, (1 + 1 + np.sqrt(0.5) + 0) / 4)
    assert scores.images[1].recovered == {"head": 1, "bg": -1}
    assert scores.images[0].emr == 1.0 and scores.images[1].cosim == {"head": 0.7071, "bg": 0.0}


def test_eval_writes_metrics_and_report(fitted: Path) -> None:
    runner = GuardedRunner()
    result = runner.invoke(
        app, ["eval", "-C", str(fitted), "--combinations", "2", "--steps", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"seen", "novel", "overall"} <= set(data)
    assert 0.0 <= data["seen"]["emr"] <= 1.0 and data["seen"]["combinations"] >= 1
    folder = fitted / "eval" / "r1"
    saved = load_metrics(open_project(fitted), "r1")
    assert saved.seen.emr == data["seen"]["emr"] and "images" not in data["seen"]
    assert "Evaluation of run r1" in (folder / "report.html").read_text()
    # A toy project: discovery vs ground truth, and the oracle's reading of the mixes.
    assert saved.seen.oracle is not None and 0.0 <= saved.seen.oracle.accuracy <= 1.0
    assert set(saved.seen.oracle.per_part) <= {"part0", "part1", "bg"}
    assert saved.discovery is not None and "nmi" in saved.discovery.world
    assert "seen_oracle_accuracy" in saved.overall
    similarity, recognition = saved.code_similarity, saved.code_recognition
    assert similarity is not None and recognition is not None
    assert set(similarity) == set(recognition) == {"part0", "part1", "bg"}  # the run's names
    flagged = not_distinct(similarity, recognition)
    said = " ".join(result.stderr.split())
    assert ("are not distinct" in said) == bool(flagged)  # warned exactly when flagged
    assert all(f"{name} (" in said for name in flagged)
    warning = saved.distinctness_warning  # and recorded with the metrics and on the page
    assert (warning is not None) == bool(flagged)
    page = (folder / "report.html").read_text()
    assert warning is None or (warning in said and html.escape(warning) in page)
    assert list(folder.glob("seen-best-*.png"))
    again = runner.invoke(
        app, ["eval", "-C", str(fitted), "--combinations", "2", "--steps", "2", "--json"]
    )
    assert json.loads(again.stdout)["seen"]["emr"] == data["seen"]["emr"]  # seeded
    info = runner.invoke(app, ["info", "-C", str(fitted), "--json"])
    assert json.loads(info.stdout)["metrics"]["run"] == "r1"
    mix_settings = open_project(fitted).config.mix
    assert saved.guidance == mix_settings.guidance  # unless given
    assert saved.negative == mix_settings.negative
    args = ["eval", "-C", str(fitted), "--combinations", "2", "--steps", "2", "--json"]
    gentle = json.loads(runner.invoke(app, [*args, "--guidance", "2"]).stdout)
    assert gentle["guidance"] == 2.0 and gentle["seen"]["cosim"] != data["seen"]["cosim"]
    plain = json.loads(runner.invoke(app, [*args, "--negative", "blurry"]).stdout)
    assert plain["negative"] == "blurry" and plain["seen"]["cosim"] != data["seen"]["cosim"]


def test_like_and_fill(fitted: Path) -> None:
    from creaturekit.discovery.discover import load_result
    from creaturekit.errors import CreatureKitError

    project = open_project(fitted)
    row = load_result(project).codes[0]
    liked = mix(project, {"part0": [[0]]}, like=row["id"], write=False, **FAST)
    expected = {Mixer(project).vocabulary.by_index[int(m)]: int(k) for m, k in row["codes"].items()}
    expected["part0"] = 0
    assert {c["part"]: c["code"] for c in liked.records[0]["codes"]} == expected
    filled = mix(project, {"bg": [[1]]}, fill=True, seed=4, write=False, **FAST)
    assert {c["part"] for c in filled.records[0]["codes"]} == {"part0", "part1", "bg"}
    with pytest.raises(CreatureKitError, match="No discovered image has id 999999"):
        mix(project, like=999999, write=False, **FAST)


def test_unwritable_output_is_a_clear_error(fitted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import creaturekit.generation.mix as stage
    from creaturekit.errors import CreatureKitError

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    project = open_project(fitted)
    before = set(project.mixes_dir.glob("*")) if project.mixes_dir.exists() else set()
    monkeypatch.setattr(stage, "contact_sheet", denied)
    with pytest.raises(CreatureKitError, match=r"Could not write the mixes.*Permission denied"):
        mix(project, {"bg": [[1]]}, **FAST)
    assert set(project.mixes_dir.glob("*")) == before  # no half-written folder left


def test_mix_help_lists_the_projects_parts(fitted: Path, tmp_path: Path) -> None:
    runner = GuardedRunner()
    result = runner.invoke(app, ["mix", "--help", "-C", str(fitted)])
    assert result.exit_code == 0 and "Usage" in result.stdout
    assert "--part0" in result.stdout and "--bg" in result.stdout and "0-1" in result.stdout
    outside = runner.invoke(app, ["mix", "--help", "-C", str(tmp_path)])
    assert outside.exit_code == 0 and "discovered project" in outside.stdout


def test_eval_compare(fitted: Path) -> None:
    import shutil as sh

    from creaturekit.evaluation.evaluate import compare

    runner = GuardedRunner()
    first = runner.invoke(
        app, ["eval", "-C", str(fitted), "--combinations", "1", "--steps", "1", "-q"]
    )
    assert first.exit_code == 0, first.output
    sh.copytree(fitted / "eval" / "r1", fitted / "eval" / "r1-copy")
    table = compare(open_project(fitted), ["r1", "r1-copy"])
    assert table["r1"] == table["r1-copy"] and "novel_emr" in table["r1"]
    result = runner.invoke(
        app, ["eval", "-C", str(fitted), "--compare", "r1", "--compare", "r1-copy", "--json"]
    )
    assert result.exit_code == 0 and set(json.loads(result.stdout)) == {"r1", "r1-copy"}
    missing = runner.invoke(app, ["eval", "-C", str(fitted), "--compare", "r1", "--compare", "x"])
    assert missing.exit_code == 1 and "not been evaluated" in missing.stderr


def test_oracle_scores_known_answer() -> None:
    from PIL import Image

    from creaturekit.toy.draw import render
    from creaturekit.toy.reference import ToyReference

    rng = np.random.default_rng(7)
    drawings = []
    while len(drawings) < 6:  # creatures with every part in view
        d = render((3, 1, 4, 6), 2, 64, rng)
        if all(d.visible) and not d.occluded:
            drawings.append(Image.fromarray(d.image))
    names = {0: "part0", 1: "bg"}
    right = ToyReference(
        part_of={0: "head", 1: "bg"}, variant_of={0: {5: 3}, 1: {0: 2}}, discovery={}
    )
    scores = right.score([{0: 5, 1: 0}] * 6, drawings, names)
    assert scores.accuracy >= 5 / 6 and scores.per_part["bg"] == 1.0
    wrong = ToyReference(
        part_of={0: "head", 1: "bg"}, variant_of={0: {5: 4}, 1: {0: 1}}, discovery={}
    )
    assert wrong.score([{0: 5, 1: 0}] * 6, drawings, names).accuracy <= 1 / 6


def test_run_from_another_discovery_is_refused(fitted: Path, tmp_path: Path) -> None:
    root = tmp_path / "rediscovered"
    shutil.copytree(fitted, root)
    result_file = root / "discovery" / "result.json"
    data = json.loads(result_file.read_text())
    data["stamp"] = data["fitted_stamp"] = "another-discovery"
    result_file.write_text(json.dumps(data))
    with pytest.raises(StageMissingError, match="another discovery result"):
        Mixer(open_project(root))


def test_run_still_mixes_after_an_update(fitted: Path, tmp_path: Path) -> None:
    """`discover --update` keeps the centroids, so runs trained before it still mix."""
    from PIL import Image

    from creaturekit.discovery.update import update
    from creaturekit.progress import quiet
    from creaturekit.project import init_project

    root = tmp_path / "updated"
    shutil.copytree(fitted, root)
    (tmp_path / "new").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), np.uint8)
    for i, picture in enumerate(pixels):
        Image.fromarray(picture).save(tmp_path / "new" / f"new{i}.png")
    with quiet():
        init_project(root, images=tmp_path / "new", force=True)
        done = update(open_project(root), report=False)
    assert done.added == 2 and done.result.stamp != done.result.fitted_stamp
    assert Mixer(open_project(root)).vocabulary.by_index  # not refused


def test_blank_images_are_reported() -> None:
    from PIL import Image

    from creaturekit.conditioning.pipeline import is_blank

    assert is_blank(Image.new("RGB", (8, 8)))  # what a NaN latent decodes to
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), np.uint8))
    assert not is_blank(noisy)
