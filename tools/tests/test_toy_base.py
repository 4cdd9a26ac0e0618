"""The toy base model: architecture, captions, stage training with exact resume, shipped parts."""

from __future__ import annotations

import json
import re
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from creaturekit import fsutil
from creaturekit.conditioning.base_model import load_base_model
from creaturekit.conditioning.pipeline import build_pipeline
from creaturekit.models import BUNDLED
from creaturekit.toy.oracle import COLUMNS, NOT_VISIBLE, accuracy, load_oracle
from creaturekit.toy.world import N_VARIANTS, PARTS, SCENES
from tools.toy.base_model import (
    IMAGE_SIZE,
    TINY,
    assemble_pipeline,
    caption,
    half_copy,
    make_text_encoder,
    make_tokenizer,
    make_unet,
    make_vae,
    save_component,
)
from tools.toy.base_report import TEXT_WIDTH, base_report
from tools.toy.base_stages import (
    HELD_OUT,
    REPORT_NAME,
    DiffusionConfig,
    DiffusionStage,
    VaeConfig,
    VaeStage,
    build_latent_pool,
    latent_labels,
    measure_vae,
    noun_positions,
    pool_combos,
    stage_finished,
    training_caption,
    write_report,
)
from tools.toy.train_base import configured, main, train_stage
from tools.toy.train_oracle import render_examples

CHECK_STREAM = 98  # no training or measuring stream of the base model or the oracle
TINY_VAE = VaeConfig(
    steps=10, batch_size=4, crop=32, full_from=2, warmup=2, eval_every=100, log_every=1
)


def test_captions_describe_parts_in_words() -> None:
    text = caption((0, 1, 2, 3), SCENES.index("snowy field"))
    assert text == (
        "a creature with a round red head, a round yellow body, long purple wings and a "
        "tufted red tail, in a snowy field"
    )
    assert caption((5, 6, 7, 0), 0, ("wings",)) == (
        "a creature with fanned blue striped wings, against a blue sky"
    )
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        truth = [*rng.integers(-1, N_VARIANTS, len(PARTS)), rng.integers(0, len(SCENES))]
        text, named = training_caption(np.asarray(truth), drop=0.2, uncond=0.1, gen=gen)
        assert not re.search(r"\d", text), text
        for part, v in zip(PARTS, truth, strict=False):
            if v == NOT_VISIBLE:
                assert part not in text, (truth, text)
            assert (part in text) == (PARTS.index(part) + 1 in named), (text, named)
        assert (0 in named) == (SCENES[truth[-1]] in text), (text, named)


def _vae_weights(stage: VaeStage) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in stage.vae.state_dict().items()}


def test_vae_stage_resumes_to_the_same_weights(tmp_path: Path) -> None:
    straight = VaeStage(tmp_path / "out", TINY, TINY_VAE)
    assert train_stage(straight, tmp_path / "a", stop_after=3) == 3
    first = VaeStage(tmp_path / "out", TINY, TINY_VAE)
    assert train_stage(first, tmp_path / "b", stop_after=1) == 1
    with pytest.raises(Exception, match="--resume"):
        train_stage(first, tmp_path / "b", stop_after=3)
    resumed = VaeStage(tmp_path / "out", TINY, TINY_VAE)
    assert train_stage(resumed, tmp_path / "b", resume=True, stop_after=3) == 3
    for name, tensor in _vae_weights(straight).items():
        assert torch.equal(tensor, _vae_weights(resumed)[name]), name
    logs = [fsutil.read_jsonl(tmp_path / run / "log.jsonl") for run in "ab"]
    for log in logs:  # wall time carries on across a resume (never a timing target)
        seconds = [r.pop("seconds") for r in log]
        assert len(seconds) == 3 and seconds == sorted(seconds) and seconds[0] >= 0
    assert logs[0] == logs[1]
    other = VaeStage(tmp_path / "out", TINY, replace(TINY_VAE, lr=1e-2))
    with pytest.raises(Exception, match="other settings"):
        train_stage(other, tmp_path / "b", resume=True)


class _InterruptedVae(VaeStage):
    """Receives Ctrl-C in the middle of step 1."""

    def loss(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        if step == 1:
            signal.raise_signal(signal.SIGINT)
        return super().loss(step, gen)


def test_ctrl_c_finishes_the_step_saves_and_resumes_exactly(tmp_path: Path) -> None:
    straight = VaeStage(tmp_path / "out", TINY, TINY_VAE)
    train_stage(straight, tmp_path / "a", stop_after=3)
    interrupted = _InterruptedVae(tmp_path / "out", TINY, TINY_VAE)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background
    assert train_stage(interrupted, tmp_path / "b", stop_after=3) == 2
    assert (tmp_path / "b" / "checkpoints" / "step-000002").is_dir()
    assert signal.getsignal(signal.SIGINT) is before
    resumed = VaeStage(tmp_path / "out", TINY, TINY_VAE)
    assert train_stage(resumed, tmp_path / "b", resume=True, stop_after=3) == 3
    for name, tensor in _vae_weights(straight).items():
        assert torch.equal(tensor, _vae_weights(resumed)[name]), name


def test_vae_stage_stops_once_its_gate_passes_and_all_skips_finished_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    easy = replace(TINY_VAE, eval_every=2, gate=0.0, final_images=4, eval_images=4)
    stage = VaeStage(out, TINY, easy)
    assert train_stage(stage, tmp_path / "work") == 2 < easy.steps
    assert stage.done and (out / "vae").is_dir()
    assert stage_finished("vae", out) and not stage_finished("diffusion", out)
    (out / "model_index.json").write_text("{}")
    report = json.loads((out / REPORT_NAME).read_text())
    fsutil.write_json(out / REPORT_NAME, report | {"diffusion": {"step": DiffusionConfig().steps}})
    assert stage_finished("diffusion", out)
    main(["--out", str(out), "--work", str(tmp_path / "w")])
    assert capsys.readouterr().out.count("finished already") == 2
    assert not (tmp_path / "w").exists()


def test_diffusion_stage_assembles_a_pipeline_that_loads_everywhere(tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "toy-base"
    save_component(make_vae(TINY), out / "vae")
    write_report(out, "vae", {"step": 1})
    config = DiffusionConfig(
        steps=2, batch_size=2, warmup=1, eval_images=2, final_images=2, sample_steps=2, pool=6
    )
    stage = DiffusionStage(out, TINY, config, cache=tmp_path / "pool.safetensors")
    assert train_stage(stage, tmp_path / "work") == 2
    assert len(stage.pool.mean) == 6 and (tmp_path / "pool.safetensors").is_file()
    assert (out / "model_index.json").is_file()
    # one copy of the VAE, and the report keeps both stages' figures
    assert set(json.loads((out / REPORT_NAME).read_text())) == {"vae", "diffusion"}
    assert not list(tmp_path.glob(".toy-base.*")), "no staging folder is left behind"
    weights = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.safetensors"))
    assert [w.split("/")[0] for w in weights] == ["text_encoder", "unet", "vae"]
    assert all(t.dtype == torch.float16 for t in load_file(out / weights[1]).values())

    pipe = StableDiffusionPipeline.from_pretrained(out)  # plain diffusers: no torch_dtype
    assert {pipe.text_encoder.dtype, pipe.unet.dtype, pipe.vae.dtype} == {torch.float32}
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a creature", num_inference_steps=2, height=IMAGE_SIZE, width=IMAGE_SIZE).images[0]
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
    base = load_base_model(str(out))
    assert base.vae_scale == 4
    assert base.unet.config.cross_attention_dim == base.text_encoder.config.hidden_size
    assert base.unet.config.block_out_channels == TINY.unet["block_out_channels"]


def test_latent_pool_covers_combinations_and_is_reused_only_for_the_same_vae(
    tmp_path: Path,
) -> None:
    combos = pool_combos()
    assert len(combos) == len(set(combos)) == N_VARIANTS ** len(PARTS) - len(HELD_OUT)
    assert not HELD_OUT & set(combos)
    vae, cache = make_vae(TINY), tmp_path / "pool.safetensors"
    pool = build_latent_pool(vae, 5, seed=0, cache=cache, batch_size=2)
    assert pool.mean.shape == (5, 4, IMAGE_SIZE // 4, IMAGE_SIZE // 4) == pool.std.shape
    visible = pool.truth[:, : len(PARTS)]
    assert torch.all((visible == NOT_VISIBLE) | (visible == torch.tensor(combos[:5])))
    again = build_latent_pool(vae, 5, seed=0, cache=cache)
    assert torch.equal(again.mean, pool.mean) and torch.equal(again.truth, pool.truth)
    stamp = cache.stat().st_mtime_ns
    with torch.no_grad():
        next(vae.parameters()).add_(1.0)
    changed = build_latent_pool(vae, 5, seed=0, cache=cache)
    assert not torch.equal(changed.mean, pool.mean) and cache.stat().st_mtime_ns != stamp
    assert torch.equal(again.labels, pool.labels) and pool.labels.shape == (5, 16, 16)
    latents, truth, labels = pool.sample(3, torch.Generator().manual_seed(0))
    assert latents.shape == (3, 4, 16, 16) and truth.shape == (3, len(COLUMNS))
    assert labels.shape == (3, 16, 16) and set(labels.unique().tolist()) <= {0, 1, 2, 3, 4}


SHIPPED_VAE = BUNDLED["toy"] / "vae"


def test_shipped_vae_reconstructs_creatures_the_oracle_can_read() -> None:
    from diffusers import AutoencoderKL

    recorded = json.loads((BUNDLED["toy"] / REPORT_NAME).read_text())["vae"]
    assert min(recorded[f"acc_{c}"] for c in COLUMNS) >= 0.97, recorded
    vae = AutoencoderKL.from_pretrained(SHIPPED_VAE, torch_dtype=torch.float32)
    oracle, data = load_oracle(), render_examples(256, seed=7, stream=CHECK_STREAM)
    scores = measure_vae(vae, oracle, data)
    originals = accuracy(oracle.predict(data.images), data.truth)
    for column in COLUMNS:  # the oracle reads reconstructions almost as well as originals
        assert scores[f"acc_{column}"] >= min(0.95, originals[column] - 0.03), (column, scores)
    assert scores["psnr"] >= 24, scores


def test_shipped_base_model_is_the_toy_preset_and_tokenizes_like_clip() -> None:
    from open_clip.tokenizer import SimpleTokenizer

    base = load_base_model("toy")
    assert base.ref.kind == "preset"
    pipe = build_pipeline(base)
    image = pipe("a creature with a round red head", num_inference_steps=2).images[0]
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
    reference = SimpleTokenizer()
    for text in ("a creature with a round red head", "<part_0> on a starry night!", "Wings"):
        assert base.tokenizer(text).input_ids[1:-1] == reference.encode(text)


@pytest.mark.skipif(
    not (BUNDLED["toy"] / "model_index.json").is_file(), reason="the toy base is not committed yet"
)
def test_shipped_base_model_loads_in_plain_diffusers() -> None:
    """``from_pretrained`` without ``torch_dtype`` (issue 23: fp16 text encoder, fp32 UNet)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(BUNDLED["toy"])
    assert {pipe.text_encoder.dtype, pipe.unet.dtype, pipe.vae.dtype} == {torch.float32}
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a creature with a round red head", num_inference_steps=1).images[0]
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE)


def test_diffusion_stage_ties_caption_nouns_to_their_parts_latents(tmp_path: Path) -> None:
    masks = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    masks[0, :8, :8] = 2
    masks[0, 8:10, 8:10] = 1  # a quarter of one latent cell: the background wins there
    labels = latent_labels(masks)
    assert labels.shape == (1, IMAGE_SIZE // 4, IMAGE_SIZE // 4)
    assert labels[0, :2, :2].eq(2).all() and labels.sum() == 8

    out = tmp_path / "out"
    save_component(make_vae(TINY), out / "vae")
    config = DiffusionConfig(batch_size=4, pool=4, uncond=0.0, drop=0.0)
    stage = DiffusionStage(out, TINY, config)
    truth = np.asarray([0, 1, 2, NOT_VISIBLE, SCENES.index("snowy field")])
    text, named = training_caption(truth, drop=0.0, uncond=0.0, gen=torch.Generator())
    assert sorted(named) == [0, 1, 2, 3]
    ids = stage.tokenizer(text, padding="max_length", max_length=77, return_tensors="pt")
    found = noun_positions(ids.input_ids[0], truth, named, stage.noun_ids)
    # the noun's last token (TINY's tokenizer splits words; the real one does not)
    ends = {label: stage.tokenizer.decode(ids.input_ids[0, 1 : pos + 1]) for pos, label in found}
    nouns = {1: "head", 2: "body", 3: "wings", 0: "field"}
    assert ends.keys() == nouns.keys()
    assert all(ends[k].replace(" ", "").endswith(nouns[k]) for k in nouns), ends

    loss, logs = stage.loss(0, torch.Generator().manual_seed(0))
    assert set(logs) == {"diffusion", "attention"} and logs["attention"] > 0
    loss.backward()
    assert stage.text_encoder.get_input_embeddings().weight.grad is not None
    quiet = DiffusionStage(out, TINY, replace(config, attn_weight=0.0))
    assert set(quiet.loss(0, torch.Generator().manual_seed(0))[1]) == {"diffusion"}


def test_base_report_shows_prompts_beside_judged_generations(tmp_path: Path) -> None:
    from PIL import Image

    model = assemble_pipeline(
        tmp_path / "base",
        vae=make_vae(TINY),
        text_encoder=make_text_encoder(TINY, make_tokenizer(TINY)),
        unet=make_unet(TINY),
        arch=TINY,
    )
    figures = base_report(tmp_path / "grid.png", str(model), rows=2, seeds=3, steps=2, repeats=1)
    cell = 2 * IMAGE_SIZE
    assert Image.open(tmp_path / "grid.png").size == (TEXT_WIDTH + 4 * (cell + 4), 2 * (cell + 14))
    assert figures["images"] == 6 and figures["seconds_per_image"] > 0
    for kind in ("novel", "random"):
        assert set(figures["accuracy"][kind]) == set(COLUMNS)
        assert all(0 <= a <= 1 for a in figures["accuracy"][kind].values())


def test_diffusion_stage_trains_a_saved_model_further(tmp_path: Path) -> None:
    from creaturekit.errors import StageMissingError

    out, pool = tmp_path / "toy-base", tmp_path / "pool.safetensors"
    save_component(make_vae(TINY), out / "vae")
    config = DiffusionConfig(
        steps=2, batch_size=2, warmup=1, eval_images=2, final_images=2, sample_steps=2, pool=6
    )
    with pytest.raises(StageMissingError, match="No saved diffusion stage"):
        DiffusionStage(out, TINY, config, cache=pool, warm_start=True)
    first = DiffusionStage(out, TINY, config, cache=pool)
    train_stage(first, tmp_path / "a")
    second = DiffusionStage(out, TINY, config, cache=pool, warm_start=True)
    assert second.phases == [2]
    for name in ("unet", "text_encoder"):
        saved = half_copy(first.modules[name]).float().state_dict()
        for key, tensor in second.modules[name].state_dict().items():
            assert torch.equal(tensor, saved[key]), (name, key)
    train_stage(second, tmp_path / "b")
    report = json.loads((out / REPORT_NAME).read_text())["diffusion"]
    assert report["step"] == 4 and report["phases"] == [2, 2]


def test_set_changes_one_stage_configuration_and_refuses_unknown_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = configured("diffusion", ["steps=1.5e3", "lr=5e-5", "fg-weight=4"])
    assert config == replace(DiffusionConfig(), steps=1500, lr=5e-5, fg_weight=4.0)
    assert configured("vae", []) == VaeConfig()
    for argv, message in (
        (["--set", "lr=1e-5"], "needs one --stage"),
        (["--stage", "diffusion", "--set", "learning_rate=1"], "KEY one of"),
        (["--stage", "diffusion", "--set", "steps=many"], "'many' is not a number"),
        (["--stage", "diffusion", "--set", "steps=1500.7"], "steps takes a whole number"),
        (["--stage", "vae", "--set", "sample_steps=2"], "KEY one of"),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
