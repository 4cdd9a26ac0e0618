"""fit end to end at tiny scale: a toy project, effnet-kmeans discovery, a tiny random SD."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from creaturekit.errors import CreatureKitError, ModelNotFoundError, StageMissingError
from creaturekit.project import Project, open_project
from creaturekit.training.distinctness import ALIKE, not_distinct
from creaturekit.training.fit_config import PRESETS, resolve_fit_config
from creaturekit.training.trainer import FitError
from tests.helpers import failing_objective, tiny_trainer


def test_settings_resolve_preset_then_toml_then_flags() -> None:
    """A flag beats creaturekit.toml, which beats the preset; an unset flag changes nothing."""
    toy = resolve_fit_config("toy", overrides={"steps": 10, "lr": 5e-3}, flags={"lr": 2e-3})
    assert (toy.steps, toy.lr) == (10, 2e-3)
    unset = resolve_fit_config("toy", flags={"rank": None})
    assert unset == PRESETS["toy"] != PRESETS["sd15"] == resolve_fit_config("sd15")


def test_fit_writes_loadable_outputs(discovered: Path, tiny_sd: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from creaturekit.conditioning.mapper import TokenMapper
    from creaturekit.progress import quiet

    project = open_project(discovered)
    with quiet():
        result = tiny_trainer(project, tiny_sd, "full").fit()
    run = result.run_dir
    assert result.step == 4 and (run / "config.toml").is_file() and (run / "vocab.json").is_file()
    log = [line for line in (run / "log.jsonl").read_text().splitlines() if line]
    assert len(log) == 4 and '"loss_attn"' in log[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    mapper = TokenMapper.load(run / "mapper.safetensors")
    assert mapper.config.depth == 2
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.load_lora_weights(run)  # the diffusers LoRA format
    assert any("lora" in n for n, _ in pipe.unet.named_parameters())


@pytest.mark.parametrize("changes", [{}, {"warmup_steps": 3}], ids=["constant", "warmup"])
def test_resume_equals_uninterrupted(
    discovered: Path, tiny_sd: Path, changes: dict[str, int]
) -> None:
    """Also when the warm-up spans the interruption (its rates follow the step)."""
    from safetensors.torch import load_file

    from creaturekit.progress import quiet

    project = open_project(discovered)
    straight, halves = (f"{name}-{len(changes)}" for name in ("straight", "halves"))
    with quiet():
        tiny_trainer(project, tiny_sd, straight, **changes).fit()
        tiny_trainer(project, tiny_sd, halves, steps=2, **changes).fit()
        tiny_trainer(project, tiny_sd, halves, resume=True, **changes).fit()
    for name in ("mapper.safetensors", "pytorch_lora_weights.safetensors"):
        a = load_file(str(project.runs_dir / straight / name))
        b = load_file(str(project.runs_dir / halves / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_lora_gets_its_own_learning_rate_when_asked(discovered: Path, tiny_sd: Path) -> None:
    from safetensors.torch import load_file

    from creaturekit.errors import ConfigError
    from creaturekit.progress import quiet

    project = open_project(discovered)
    moved = {}
    for name, lora_lr in (("same-lr", 0.0), ("frozen-lora", 1e-12)):
        with quiet():
            result = tiny_trainer(project, tiny_sd, name, steps=2, lora_lr=lora_lr).fit()
        weights = load_file(result.run_dir / "pytorch_lora_weights.safetensors")
        moved[name] = max(float(w.abs().max()) for k, w in weights.items() if "lora.up" in k)
    assert moved["same-lr"] > 1e-4 > 1e-9 > moved["frozen-lora"]  # up (B) starts at zero
    with pytest.raises(ConfigError, match="lora_lr cannot be negative"):
        resolve_fit_config("toy", flags={"lora_lr": -1.0})


def test_warmup_raises_the_rates_linearly(discovered: Path, tiny_sd: Path) -> None:
    from creaturekit.progress import quiet
    from creaturekit.training.run import RunFolder

    project = open_project(discovered)
    with quiet():
        result = tiny_trainer(project, tiny_sd, "warm", warmup_steps=3, lora_lr=1e-4).fit()
    rows = RunFolder(result.run_dir).read_log()
    assert [r["lr"] for r in rows] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3])
    assert [r["lora_lr"] for r in rows] == pytest.approx([1e-4 / 3, 2e-4 / 3, 1e-4, 1e-4])


def test_cosine_schedule_decays_after_the_warmup() -> None:
    from creaturekit.errors import ConfigError
    from creaturekit.training.fit_config import lr_scale

    config = resolve_fit_config("toy", flags={"steps": 9, "warmup_steps": 2})
    assert [lr_scale(config, s) for s in (1, 2, 9)] == [0.5, 1.0, 1.0]
    config = resolve_fit_config(
        "toy", flags={"steps": 9, "warmup_steps": 2, "lr_schedule": "cosine"}
    )
    scales = [lr_scale(config, s) for s in range(1, 10)]
    assert scales[:2] == [0.5, 1.0]  # the warm-up, then the top of the cosine
    assert scales[5] == pytest.approx(0.5)  # half-way through the 8-step span
    assert all(a > b for a, b in itertools.pairwise(scales[1:])) and 0 < scales[-1] < 0.05
    assert lr_scale(config, 12) == 0.0  # a step past the end (a resume that lowered steps)
    with pytest.raises(ConfigError, match="lr_schedule must be"):
        resolve_fit_config("toy", flags={"lr_schedule": "linear"})


def test_code_init_std_sets_the_code_embeddings_scale() -> None:
    from creaturekit.conditioning.mapper import MapperConfig, TokenMapper

    config = MapperConfig(num_codes=(40, 40), dim=64, depth=2)
    for std in (0.02, 1.0):
        weight = TokenMapper(config, code_std=std).code_embedding.weight.detach()
        assert float(weight.std()) == pytest.approx(std, rel=0.05)


def test_runs_saved_before_new_settings_keep_the_old_behaviour(tmp_path: Path) -> None:
    """A config.toml written before warmup_steps and code_init_std existed reads as the
    values those runs were trained with (no warm-up, codes at std 0.02), whatever the
    presets say now; bad values are refused."""
    from creaturekit import fsutil
    from creaturekit.errors import ConfigError
    from creaturekit.training.run import CONFIG_FILE, RunFolder, RunVocab

    run = RunFolder(tmp_path / "old")
    run.start(PRESETS["toy"], RunVocab("s", "h", "creature", []), "toy")
    older = run.saved_config()
    del older["fit"]["warmup_steps"], older["fit"]["code_init_std"]
    fsutil.write_toml(run.path / CONFIG_FILE, older)
    config = run.info().fit
    assert (config.warmup_steps, config.code_init_std) == (0, 0.02)
    assert run.resume_config({"steps": 9}).code_init_std == 0.02
    for key, value, message in (
        ("warmup_steps", -1, "warmup_steps cannot be negative"),
        ("code_init_std", 0.0, "code_init_std must be positive"),
    ):
        with pytest.raises(ConfigError, match=message):
            resolve_fit_config("toy", flags={key: value})


def test_fit_bad_input(discovered: Path, tiny_sd: Path, tmp_path: Path) -> None:
    from creaturekit.progress import quiet

    project = open_project(discovered)
    with quiet():
        with pytest.raises(FitError, match="attn_resolution 5"):
            tiny_trainer(project, tiny_sd, "bad-res", attn_resolution=5).fit()
        with pytest.raises(ModelNotFoundError, match="does not exist"):
            tiny_trainer(project, tmp_path / "no-model", "nomodel").fit()
        with pytest.raises(FitError, match="No checkpoint"):
            tiny_trainer(project, tiny_sd, "never-ran", resume=True).fit()
    bare = Project(root=tmp_path / "bare")
    with pytest.raises(StageMissingError, match="discover"):
        tiny_trainer(bare, tiny_sd, "x").fit()


def test_inputs_are_checked_before_any_model_is_loaded(
    discovered: Path, tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A taken run name and a resume without checkpoint are refused at once (diffusers'
    check_inputs habit), not after minutes of model loading and latent caching."""
    import shutil

    root = tmp_path / "proj"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs"))
    project = open_project(root)
    (project.runs_dir / "taken").mkdir(parents=True)
    (project.runs_dir / "taken" / "mapper.safetensors").write_bytes(b"")

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr("creaturekit.training.trainer.load_base_model", no_loading)
    with pytest.raises(CreatureKitError, match="exists already"):
        tiny_trainer(project, tiny_sd, "taken").fit()
    with pytest.raises(FitError, match="No checkpoint"):
        tiny_trainer(project, tiny_sd, "never-ran", resume=True).fit()


def test_fit_cli(discovered: Path, tiny_sd: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from creaturekit.cli import app
    from creaturekit.training.run import RunFolder
    from tests.helpers import GuardedRunner

    project = tmp_path / "moved"
    shutil.copytree(discovered, project, ignore=shutil.ignore_patterns("runs"))
    runner = GuardedRunner()
    args = [
        "fit",
        "-C",
        str(project),
        "--model",
        str(tiny_sd),
        "--steps",
        "2",
        "--resolution",
        "16",
        "--batch-size",
        "2",
        "--run",
        "cli",
        "--set",
        "lr_schedule=cosine",  # any other setting; text without TOML quotes
        "--set",
        "steps=9",  # a named flag (--steps 2) wins
        "--json",
    ]
    for bad, message in (
        (["--set", "nokey"], "expects KEY=VALUE"),
        (["--set", "bogus=1"], "Unknown fit setting 'bogus'"),
    ):
        refused = runner.invoke(app, [*args[:-1], *bad])
        assert refused.exit_code == 1 and message in refused.stderr
    proj = open_project(project)  # settings without a flag come from creaturekit.toml
    proj.config.fit.overrides = {
        "attn_resolution": 8,
        "sample_every": 0,
        "checkpoint_every": 1,
        "code_init_std": 0.02,  # codes that start alike: still alike after 2 steps, reported
    }
    proj.save_config()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["step"] == 2 and data["run"] == "cli"
    saved = RunFolder(project / "runs" / "cli").info().fit
    assert (saved.lr_schedule, saved.steps) == ("cosine", 2)
    last = json.loads((project / "runs" / "cli" / "log.jsonl").read_text().splitlines()[-1])
    similarity = last["code_similarity"]  # how distinct each part's codes are (distinctness.py)
    recognition = last["code_recognition"]  # and what they draw (recognition.py)
    assert set(similarity) == set(recognition) == {"part0", "part1", "bg"}
    assert all(v is None or -1 <= v <= 1 for v in similarity.values())
    assert all(v is None or 0 <= v <= 1 for v in recognition.values())
    flagged = not_distinct(similarity, recognition)
    assert any(similarity[name] >= ALIKE for name in flagged)  # codes that start alike
    said = " ".join(result.stderr.split())
    assert said.count("are not distinct after 2 steps") == 1  # one line for every part
    assert last["warning"] in said  # and recorded in the run's log
    assert all(f"{name} (" in said for name in flagged)
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--resume" in again.stderr
    resumed = runner.invoke(app, [*args[:-1], "--steps", "3", "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["step"] == 3


def test_fit_before_discover_cli(tmp_path: Path) -> None:
    from creaturekit.cli import app
    from creaturekit.toy.dataset import create_toy_project
    from tests.helpers import GuardedRunner

    create_toy_project(tmp_path / "p", species=5, per_species=1)
    result = GuardedRunner().invoke(app, ["fit", "-C", str(tmp_path / "p")])
    assert result.exit_code == 1
    assert "run `creaturekit discover` first" in result.stderr


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_ctrl_c_saves_a_checkpoint_and_resume_matches(
    discovered: Path, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch, schedule: str
) -> None:
    """Also with the cosine schedule, whose rates follow the step."""
    from safetensors.torch import load_file

    from creaturekit.progress import quiet
    from creaturekit.training.run import RunFolder
    from creaturekit.training.trainer import FitInterrupted

    project = open_project(discovered)
    settings = {"checkpoint_every": 100, "lr_schedule": schedule}
    reference, name = f"reference-{schedule}", f"ctrl-c-{schedule}"
    with quiet():
        tiny_trainer(project, tiny_sd, reference, **settings).fit()
        with monkeypatch.context() as m:
            failing_objective(m, at_call=6, failure=KeyboardInterrupt)  # mid step 3
            with pytest.raises(FitInterrupted, match="step 2"):
                tiny_trainer(project, tiny_sd, name, **settings).fit()
        run = project.runs_dir / name
        assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000002"]
        tiny_trainer(project, tiny_sd, name, resume=True, **settings).fit()
    a = load_file(str(run / "mapper.safetensors"))
    b = load_file(str(project.runs_dir / reference / "mapper.safetensors"))
    rates = [row["lr"] for row in RunFolder(run).read_log()]
    assert rates == [row["lr"] for row in RunFolder(project.runs_dir / reference).read_log()]
    assert (rates[0] > rates[-1]) == (schedule == "cosine")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    discovered: Path, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creaturekit.progress import quiet

    project = open_project(discovered)
    failing_objective(monkeypatch, at_call=5, failure=None)
    with quiet(), pytest.raises(FitError, match="NaN"):
        tiny_trainer(project, tiny_sd, "nan").fit()
    checkpoints = project.runs_dir / "nan" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["step-000002"]
    assert not (project.runs_dir / "nan" / "mapper.safetensors").exists()


def test_disk_full_while_saving_keeps_previous_checkpoint(
    discovered: Path, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from creaturekit.progress import quiet
    from creaturekit.training import checkpoint

    real = checkpoint.optimizer_to_files
    calls = {"n": 0}

    def full(*args: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpoint, "optimizer_to_files", full)
    project = open_project(discovered)
    with quiet(), pytest.raises(FitError, match=r"No space left.*intact"):
        tiny_trainer(project, tiny_sd, "full-disk").fit()
    checkpoints = project.runs_dir / "full-disk" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["step-000002"]


def test_samples_uncached_latents_and_reloaded_embeddings(
    discovered: Path, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import StableDiffusionPipeline

    from creaturekit.conditioning.mapper import TokenMapper
    from creaturekit.conditioning.pipeline import part_prompt_embeddings
    from creaturekit.conditioning.text import TextConditioning
    from creaturekit.progress import quiet
    from creaturekit.training import trainer as trainer_module

    project = open_project(discovered)
    trainer = tiny_trainer(
        project, tiny_sd, "samples", steps=2, sample_every=2, sample_steps=2, cache_latents=False
    )
    asked: list[str] = []
    drawn = trainer_module.generate

    def spy(
        pipe: Any, conditioning: Any, mapper: Any, prompts: list[str], *a: Any, **k: Any
    ) -> Any:
        asked.extend(prompts)
        return drawn(pipe, conditioning, mapper, prompts, *a, **k)

    monkeypatch.setattr(trainer_module, "generate", spy)
    with quiet():
        trainer.fit()
    run = project.runs_dir / "samples"
    assert (run / "samples" / "step-000002.png").is_file()
    # prompted as `mix` prompts them: a toy project's template is the part tokens alone
    assert asked and all(p.startswith("<part_") and "photo" not in p for p in asked)
    prompt, codes = ["a photo of a <part_0> <part_1> creature"], [[1, 0]]
    trained = part_prompt_embeddings(trainer.conditioning, trainer.mapper, prompt, codes).hidden
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    conditioning = TextConditioning("sd", [pipe.tokenizer], [pipe.text_encoder])
    ids = conditioning.add_part_tokens(len(trainer.result.parts))
    mapper = TokenMapper.load(run / "mapper.safetensors")
    fresh = part_prompt_embeddings(conditioning, mapper, prompt, codes).hidden
    assert ids == trainer.token_ids and torch.equal(trained, fresh)


def test_two_processes_with_accelerate(discovered: Path, tiny_sd: Path, tmp_path: Path) -> None:
    """`fit --num-processes 2` relaunches through accelerate (CPU, gloo) and resumes."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    root = tmp_path / "ddp"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs"))
    proj = open_project(root)
    proj.config.fit.overrides = {
        "attn_resolution": 8,
        "sample_every": 0,
        "checkpoint_every": 1,
        "resolution": 16,
        "batch_size": 1,
        "projector_depth": 2,
        "log_every": 1,
    }
    proj.save_config()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [
        sys.executable,
        "-m",
        "creaturekit",
        "fit",
        "-C",
        str(root),
        "--model",
        str(tiny_sd),
        "--run",
        "ddp",
        "--num-processes",
        "2",
        "-q",
    ]
    first = subprocess.run(
        [*base, "--steps", "2"], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert first.returncode == 0, first.stderr[-3000:]
    run = root / "runs" / "ddp"
    checkpoint = run / "checkpoints" / "step-000002"
    assert (checkpoint / "rng-0.safetensors").is_file() and (
        checkpoint / "rng-1.safetensors"
    ).is_file()
    assert json.loads((checkpoint / "state.json").read_text())["processes"] == 2
    resumed = subprocess.run(
        [*base, "--steps", "3", "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3] and (run / "pytorch_lora_weights.safetensors").is_file()


def test_a_checkpoint_becomes_a_run_to_mix(discovered: Path, tiny_sd: Path, tmp_path: Path) -> None:
    """``run_from_checkpoint``: the last checkpoint's run draws exactly what the finished run
    draws; an earlier one is a run too; a missing step or a taken name is refused."""
    import shutil

    from creaturekit.generation.mix import mix
    from creaturekit.progress import quiet
    from creaturekit.training.fit import run_from_checkpoint

    root = tmp_path / "proj"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs"))
    project = open_project(root)
    with quiet():
        tiny_trainer(project, tiny_sd, "r").fit()  # checkpoints at steps 2 and 4
        run_from_checkpoint(project, "r", 4, "r-at-4")
        early = run_from_checkpoint(project, "r", 2, "r-at-2")
        asked = {"part0": [[1]], "part1": [[0]]}
        fast = {"steps": 2, "size": 16, "write": False, "model": str(tiny_sd)}
        final, again = (mix(project, asked, run=run, **fast) for run in ("r", "r-at-4"))
        assert np.array_equal(np.asarray(final.images[0]), np.asarray(again.images[0]))
        assert mix(project, asked, run="r-at-2", **fast).images
    assert (early.path / "pytorch_lora_weights.safetensors").is_file()
    with pytest.raises(CreatureKitError, match="no checkpoint of step 3"):
        run_from_checkpoint(project, "r", 3, "x")
    with pytest.raises(CreatureKitError, match="exists already"):
        run_from_checkpoint(project, "r", 2, "r-at-2")


def test_8bit_adam_resumes_exactly(discovered: Path, tiny_sd: Path) -> None:
    """bitsandbytes' 8-bit AdamW (its quantised states nest in the optimizer state) is
    checkpointed in safetensors/JSON and resumes to the weights of an uninterrupted run."""
    from safetensors.torch import load_file

    from creaturekit import fsutil
    from creaturekit.progress import quiet

    project = open_project(discovered)
    with quiet():
        tiny_trainer(project, tiny_sd, "bnb-straight", optimizer="adamw8bit").fit()
        tiny_trainer(project, tiny_sd, "bnb-halves", optimizer="adamw8bit", steps=2).fit()
        tiny_trainer(project, tiny_sd, "bnb-halves", optimizer="adamw8bit", resume=True).fit()
    layout = fsutil.read_json(
        project.runs_dir / "bnb-halves/checkpoints/step-000002/optimizer.json"
    )
    assert layout["nested"]  # the quantisation state of each parameter
    for name in ("mapper.safetensors", "pytorch_lora_weights.safetensors"):
        a = load_file(str(project.runs_dir / "bnb-straight" / name))
        b = load_file(str(project.runs_dir / "bnb-halves" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_8bit_adam_without_bitsandbytes_says_what_to_install(
    discovered: Path, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from creaturekit.errors import ConfigError

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setitem(sys.modules, "bitsandbytes.optim", None)
    trainer = tiny_trainer(open_project(discovered), tiny_sd, "bnb-missing", optimizer="adamw8bit")
    with pytest.raises(
        ConfigError, match=r"needs bitsandbytes: `pip install 'creaturekit\[bnb\]'`"
    ):
        trainer.fit()
    assert not (open_project(discovered).runs_dir / "bnb-missing" / "config.toml").exists()


def test_v_prediction_base_trains_on_the_velocity_and_mixes(
    discovered: Path, tmp_path: Path
) -> None:
    """A v-prediction base (as SD 2.x), loaded from a folder like a downloaded one: the fit
    regresses the velocity, and `mix` samples with the same prediction type."""
    import json
    import shutil

    from creaturekit.generation.mix import Mixer
    from creaturekit.progress import quiet
    from creaturekit.training.objective import denoising_target
    from tests.tiny_sd import save_tiny_pipeline

    base = save_tiny_pipeline(tmp_path / "v-base")
    config_file = base / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "prediction_type": "v_prediction"}))
    root = Path(
        shutil.copytree(discovered, tmp_path / "proj", ignore=shutil.ignore_patterns("runs"))
    )
    project = open_project(root)
    trainer = tiny_trainer(project, base, "v", steps=2)
    with quiet():
        trainer.fit()
    scheduler = trainer.objective.scheduler
    assert scheduler.config.prediction_type == "v_prediction"
    clean, noise, t = torch.randn(2, 4, 2, 2), torch.randn(2, 4, 2, 2), torch.tensor([5, 90])
    ac = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    velocity = ac.sqrt() * noise - (1 - ac).sqrt() * clean  # v = sqrt(a) eps - sqrt(1-a) x0
    assert torch.allclose(denoising_target(scheduler, clean, noise, t), velocity, atol=1e-6)
    mixer = Mixer(project, "v", model=str(base))  # a folder outside the project: named
    assert mixer.pipe.scheduler.config.prediction_type == "v_prediction"
    image = np.asarray(mixer({"part0": [1], "bg": [0]}, seed=0, steps=2, size=16).images[0])
    assert image.shape == (16, 16, 3) and image.std() > 0
