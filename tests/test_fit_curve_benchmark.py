"""benchmarks/fit_curve.py at tiny scale: it fits the run, then scores its checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark
from tests.helpers import TINY_MIX_FIT


def test_fit_curve_fits_the_run_and_scores_each_listed_step(
    discovered: Path, tiny_sd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from creaturekit.progress import quiet
    from creaturekit.training.run import RunFolder

    bench = load_benchmark("fit_curve")
    root = tmp_path / "proj"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs", "eval"))
    tiny = {k: v for k, v in TINY_MIX_FIT.items() if k not in ("steps", "checkpoint_every")}
    settings = [a for k, v in tiny.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    out = tmp_path / "curve.json"
    argv = ["--project", str(root), "--run", "c", "--steps", "2", "4", "--model", str(tiny_sd)]
    argv += [*settings, "--set", "code_init_std=0.5", "--combinations", "2"]
    argv += ["--sample-steps", "1", "--out", str(out)]
    with quiet():
        assert bench.main(argv) == 0
    fit = RunFolder(root / "runs" / "c").saved_config()["fit"]
    assert (fit["steps"], fit["checkpoint_every"], fit["code_init_std"]) == (4, 2, 0.5)
    rows = json.loads(out.read_text())["rows"]
    assert [r["step"] for r in rows] == [2, 4]
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["code_similarity"]
        assert set(row["code_recognition"]) == set(row["code_similarity"])
        assert (root / "runs" / f"c-at-{row['step']}" / "mapper.safetensors").is_file()
    assert "step 4:" in capsys.readouterr().out

    again = [*argv[:-2], "--out", str(tmp_path / "again.json")]  # the run exists now
    assert bench.main(again) == 1
    assert "exists already" in capsys.readouterr().err
