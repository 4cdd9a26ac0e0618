"""The ablation benchmark at tiny scale, and the image-cluster baseline it compares against."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from creaturekit.evaluation.evaluate import load_metrics
from creaturekit.evaluation.metrics import GROUPS
from creaturekit.project import open_project
from tests.benchmark_scripts import load_benchmark
from tests.helpers import TINY_MIX_FIT

TINY = {k: v for k, v in TINY_MIX_FIT.items() if k != "steps"}


def test_cluster_serving_picks_the_best_matching_cluster() -> None:
    from creaturekit.evaluation.baseline import ClusterServing

    serving = ClusterServing(
        members=[
            [{0: 1, 1: 1, 2: 0}, {0: 1, 1: 0, 2: 0}],  # head 1 always, body 1 half the time
            [{0: 0, 1: 1, 2: 1}],
            [{0: 2, 1: 2, 2: 2}],
            [],
        ],
        part="bg",
    )
    assert serving({0: 1, 1: 1}) == {"bg": [0]}  # 1.5 shared codes per member vs 1 and 0
    assert serving.cluster({0: 0, 1: 1, 2: 0}) == 1  # 2 per member vs 1.5
    assert serving.cluster({0: 2, 1: 0}) == 2  # 1 vs 0.5
    assert serving.cluster({0: 1, 2: 1}) == 0  # 1 and 1: the larger cluster
    assert serving.cluster({0: 5, 1: 5}) == 0  # nothing matches: the largest cluster


def test_ablation_trains_and_scores_every_variant(
    discovered: Path, tiny_sd: Path, tmp_path: Path
) -> None:
    from creaturekit.discovery.discover import load_discoverer, load_result
    from creaturekit.progress import quiet
    from creaturekit.training.captions import training_caption
    from creaturekit.training.run import RunFolder

    bench = load_benchmark("ablation")
    root = tmp_path / "toy"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs", "eval"))
    out = tmp_path / "out"
    settings = [a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    argv = ["--model", str(tiny_sd), "--project", str(root), "--steps", "2", "--seed", "3"]
    argv += ["--combinations", "2", "--sample-steps", "1", "--clusters", "3", "--out", str(out)]
    with quiet():
        assert bench.main(argv + settings) == 0
    report = json.loads((out / "ablation.json").read_text())
    rows = {r["variant"]: r for r in report["runs"]}
    assert list(rows) == list(bench.VARIANTS) and report["discovery"] == "effnet-kmeans"
    for row in rows.values():
        assert row["steps"] == 2 and row["seed"] == 3 and row["trainable_params"] > 0
        assert row["fit_s"] > 0 and row["step_s"] > 0 and row["eval_s"] > 0
        for key in ("novel_oracle", "novel_emr", "seen_oracle", "seen_emr"):
            assert 0.0 <= row[key] <= 1.0
        assert row["combinations"]["novel"] >= 1

    runs = {v: RunFolder(Path(r["project"]) / "runs" / r["run"]) for v, r in rows.items()}
    logged = {v: [line for line in run.read_log() if "loss" in line] for v, run in runs.items()}
    fit = {v: run.saved_config()["fit"] for v, run in runs.items()}
    assert all(line.get("loss_attn") is not None for line in logged["full"])
    assert fit["full"]["rank"] == 4 and runs["full"].lora.is_file()
    assert fit["no-attn"]["attn_loss"] == 0.0
    assert logged["no-attn"] and not any("loss_attn" in line for line in logged["no-attn"])
    assert fit["ti-only"]["rank"] == 0 and not runs["ti-only"].lora.is_file()
    assert rows["ti-only"]["trainable_params"] < rows["full"]["trainable_params"]
    assert (fit["full"]["code_init_std"], fit["codes-0.02"]["code_init_std"]) == (1.0, 0.02)
    assert all(f["seed"] == 3 and f["steps"] == 2 for f in fit.values())

    # The baseline: its own project over the same images, one part whose codes are clusters.
    baseline = open_project(Path(rows["image-clusters"]["project"]))
    assert baseline.root != root and baseline.images_hash() == open_project(root).images_hash()
    vocab = runs["image-clusters"].vocab()
    assert [(p.name, p.subconcepts) for p in vocab.parts] == [("bg", 3)]
    clusters = load_result(baseline)
    assert all(len(row["codes"]) == 1 for row in clusters.codes)
    assert {row["codes"]["0"] for row in clusters.codes} == {0, 1, 2}
    assert not clusters.masks.any()  # the one part covers every patch
    caption, codes = training_caption({0: 1}, random.Random(0), "creature", 0.0)
    assert caption == "<part_0>" and codes == [1]  # exactly one token per training image
    images = [baseline.images_dir / row["file"] for row in clusters.codes]
    recoded = load_discoverer(baseline.discovery_dir).encode(images).codes[:, 0]
    assert np.array_equal(recoded, [row["codes"]["0"] for row in clusters.codes])

    # Every variant was scored on the same combinations, in the parts project's terms.
    evaluated = {v: load_metrics(open_project(root), r["run"]) for v, r in rows.items()}
    for group in GROUPS:
        requested = {v: [i.requested for i in m.group(group).images] for v, m in evaluated.items()}
        assert requested["full"] and all(r == requested["full"] for r in requested.values())
    assert set(evaluated["image-clusters"].novel.per_part) <= {"part0", "part1", "bg"}

    table = (out / "ablation.md").read_text().splitlines()
    assert table[0].startswith("| variant | novel oracle | novel EMR |") and len(table) == 7
    assert {s["variant"] for s in report["summary"]} == set(bench.VARIANTS)


def test_missing_base_model_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from creaturekit import models

    monkeypatch.setitem(models.BUNDLED, "toy", tmp_path / "not-trained-yet")
    bench = load_benchmark("ablation")
    assert bench.main(["--project", str(tmp_path / "toy")]) == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("Error: The 'toy' base model is not included") and "\n" not in message
    assert not (tmp_path / "toy").exists()  # said before any set-up
