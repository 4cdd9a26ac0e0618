"""benchmarks/mix_settings.py on a tiny fitted run: the figures eval reports, per setting."""

from __future__ import annotations

import json
import shutil
from itertools import product
from pathlib import Path

import pytest

from creaturekit.project import open_project
from tests.benchmark_scripts import load_benchmark


def test_mix_settings_reproduce_eval_and_cover_every_setting(
    fitted: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from creaturekit.evaluation.evaluate import evaluate
    from creaturekit.progress import quiet

    bench = load_benchmark("mix_settings")
    root = tmp_path / "proj"
    shutil.copytree(fitted, root)
    project = open_project(root)
    guidance, negative = project.config.mix.guidance, project.config.mix.negative
    out = tmp_path / "sweep.json"
    argv = ["--project", str(root), "--runs", "r1", "--combinations", "3", "--sample-steps", "1"]
    argv += ["--guidance", str(guidance), "2", "--negative", negative, "blurry", "--out", str(out)]
    with quiet():
        metrics = evaluate(project, "r1", combinations=3, steps=1, image_metrics=False)
        assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert report["command"].startswith("python benchmarks/mix_settings.py --project")
    assert [(r["guidance"], r["negative"]) for r in rows] == list(
        product([guidance, 2.0], [negative, "blurry"])
    )
    novel = metrics.novel
    assert novel.oracle is not None
    assert rows[0]["accuracy"] == novel.oracle.accuracy  # eval's draw and seeds
    assert rows[0]["per_part"] == novel.oracle.per_part
    for row in rows:
        assert row["run"] == "r1" and row["draw"] == 0
        assert row["combinations"] == novel.combinations >= 1
        assert 0.0 <= row["accuracy"] <= 1.0 and set(row["per_part"]) <= set(novel.per_part)
    assert "r1  guidance 2  negative 'blurry':" in capsys.readouterr().out


def test_mix_settings_refuse_an_unfitted_run(
    fitted: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = load_benchmark("mix_settings")
    assert bench.main(["--project", str(fitted), "--runs", "nope"]) == 1
    assert "Error:" in capsys.readouterr().err
