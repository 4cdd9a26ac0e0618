"""SDXL bases through the same commands: family detection, both text encoders, size
conditioning, the attention loss at SDXL's resolutions, fit / resume / mix / eval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from creaturekit.errors import ConfigError, CreatureKitError
from creaturekit.project import Project, open_project
from tests.helpers import TINY_FIT, fit_runs

#: Tiny SDXL fits: 32 px images (latent 16), cross-attention maps at 8 and 4.
XL_FIT = {**TINY_FIT, "resolution": 32, "attn_resolution": 4}


def xl_fit(project: Project, model: Path, run: str, resume: bool = False, **changes: Any) -> Any:
    """``fit`` with the sdxl preset at tiny scale (the facade, as a user calls it)."""
    from creaturekit.training.fit import fit

    flags = {} if resume else {**XL_FIT, "model": str(model)}
    return fit(project, preset="sdxl", run=run, resume=resume, **{**flags, **changes})


def test_family_comes_from_model_index(tiny_sd: Path, tiny_sdxl: Path, tmp_path: Path) -> None:
    from creaturekit.conditioning.base_model import load_base_model, model_family
    from creaturekit.models import resolve_model

    assert model_family(resolve_model(str(tiny_sd))) == "sd"
    assert model_family(resolve_model(str(tiny_sdxl))) == "sdxl"
    # a name that says "xl" changes nothing: the index decides
    renamed = Path(shutil.copytree(tiny_sd, tmp_path / "my-sdxl-model"))
    assert model_family(resolve_model(str(renamed))) == "sd"
    index = json.loads((renamed / "model_index.json").read_text())
    (renamed / "model_index.json").write_text(
        json.dumps(index | {"_class_name": "KandinskyPipeline"})
    )
    with pytest.raises(ConfigError, match="is a KandinskyPipeline; creaturekit works on"):
        load_base_model(str(renamed))
    base = load_base_model(str(tiny_sdxl))
    assert base.family == "sdxl" and [e.config.hidden_size for e in base.text_encoders] == [32, 48]


def test_conditioning_matches_diffusers_sdxl_pipeline(tiny_sdxl: Path) -> None:
    """Prompt embeddings, pooled embeddings, no negative prompt ("" in creaturekit, None
    in diffusers: zeros) and the size conditioning are what diffusers' SDXL pipeline
    computes."""
    from diffusers import StableDiffusionXLPipeline

    from creaturekit.conditioning.base_model import load_base_model
    from creaturekit.conditioning.text import TextConditioning

    conditioning = TextConditioning.of(load_base_model(str(tiny_sdxl)))
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    prompt = "a photo of a small red bird"
    with torch.no_grad():
        ours = conditioning.encode([prompt])
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt, do_classifier_free_guidance=True, negative_prompt=None
        )
        empty = conditioning.negative("")
    assert ours.hidden.shape == (1, 77, 80)
    assert torch.allclose(ours.hidden, embeds, atol=1e-6)
    assert torch.allclose(ours.pooled, pooled, atol=1e-6)  # type: ignore[arg-type]
    assert torch.equal(empty.hidden, negative) and torch.equal(empty.pooled, negative_pooled)  # type: ignore[arg-type]
    inputs = conditioning.unet_inputs(ours, [(375, 500)], 32)
    expected = pipe._get_add_time_ids(
        (375, 500), (0, 0), (32, 32), torch.float32, text_encoder_projection_dim=48
    )
    assert torch.equal(inputs["added_cond_kwargs"]["time_ids"], expected)
    assert torch.equal(inputs["added_cond_kwargs"]["text_embeds"], ours.pooled)


def test_part_tokens_reach_both_encoders(tiny_sdxl: Path) -> None:
    from creaturekit.conditioning.base_model import load_base_model
    from creaturekit.conditioning.mapper import MapperConfig, TokenMapper
    from creaturekit.conditioning.text import TextConditioning
    from creaturekit.conditioning.tokens import part_token

    conditioning = TextConditioning.of(load_base_model(str(tiny_sdxl)))
    conditioning.add_part_tokens(2)
    assert conditioning.mapper_split == (32, 48)
    mapper = TokenMapper(MapperConfig(num_codes=(3, 3), dim=80, depth=2, split=(32, 48)))
    prompt = [f"a photo of a {part_token(0)} {part_token(1)} bird"]
    with torch.no_grad():
        a = conditioning.encode(prompt, [[0, 1]], mapper)
        b = conditioning.encode(prompt, [[2, 1]], mapper)
    assert [part for _, part in a.found[0]] == [0, 1]
    # the code changes both encoders' halves of the context, and the pooled embedding
    assert not torch.allclose(a.hidden[..., :32], b.hidden[..., :32])
    assert not torch.allclose(a.hidden[..., 32:], b.hidden[..., 32:])
    assert not torch.allclose(a.pooled, b.pooled)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not add up"):
        TokenMapper(MapperConfig(num_codes=(3,), dim=80, split=(32, 32)))


def test_attention_resolutions_of_sd15_and_sdxl() -> None:
    """SD 1.5 at 512 px has cross-attention at 64, 32, 16 and 8 (middle block); SDXL at
    1024 px only at 64 and 32, where the reference's 16x16 place (1/32 of the image) is 32."""
    from creaturekit.training.attention import cross_attention_sides

    sd15 = SimpleNamespace(
        down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        mid_block_type="UNetMidBlock2DCrossAttn",
    )
    sdxl = SimpleNamespace(
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        mid_block_type="UNetMidBlock2DCrossAttn",
    )
    assert cross_attention_sides(sd15, 64) == {64, 32, 16, 8}
    assert cross_attention_sides(sdxl, 128) == {64, 32}


def test_recorder_on_sdxl_structure_averages_the_lowest_level() -> None:
    """SDXL's real block structure (2 layers per block, 1/2/10 transformer blocks, 3
    levels) with narrow channels: at the lowest level 2x10 (down) + 10 (middle) + 3x10
    (up) = 60 cross-attention layers are recorded, at the next 2x2 + 3x2 = 10."""
    from creaturekit.training.attention import install_attention_recorder
    from tests.tiny_sd import tiny_sdxl_unet

    unet = tiny_sdxl_unet(cross_dim=16, pooled_dim=8, transformer_layers=(1, 2, 10))
    added = {"text_embeds": torch.zeros(1, 8), "time_ids": torch.zeros(1, 6)}
    for side, layers in ((4, 60), (8, 10)):
        store = install_attention_recorder(unet, side)
        with torch.no_grad():
            unet(torch.zeros(1, 4, 16, 16), 1, torch.zeros(1, 7, 16), added_cond_kwargs=added)
        assert store.layers == layers and store.maps().shape == (1, side * side, 7)


def test_sdxl_fit_resumes_exactly_then_mixes_and_evaluates(
    discovered: Path, tiny_sdxl: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from creaturekit.conditioning.mapper import TokenMapper
    from creaturekit.evaluation.evaluate import evaluate
    from creaturekit.generation.mix import Mixer
    from creaturekit.progress import quiet

    root = Path(
        shutil.copytree(discovered, tmp_path / "proj", ignore=shutil.ignore_patterns("runs"))
    )
    project = open_project(root)
    with quiet():
        xl_fit(project, tiny_sdxl, "straight")
        xl_fit(project, tiny_sdxl, "halves", steps=2)
        xl_fit(project, tiny_sdxl, "halves", resume=True, steps=4)
    for name in ("mapper.safetensors", "pytorch_lora_weights.safetensors"):
        a = load_file(str(root / "runs" / "straight" / name))
        b = load_file(str(root / "runs" / "halves" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    info = project.runs_dir / "straight"
    assert 'family = "sdxl"' in (info / "config.toml").read_text()
    mapper = TokenMapper.load(info / "mapper.safetensors")
    assert mapper.config.split == (32, 48) and mapper.config.dim == 80
    log = (info / "log.jsonl").read_text()
    assert '"loss_attn"' in log

    mixer = Mixer(project, "straight")
    assert mixer.resolution == 32
    first = mixer({"part0": [1], "bg": [0]}, seed=3, steps=2)
    again = mixer({"part0": [1], "bg": [0]}, seed=3, steps=2)
    assert first.blank == [] and first.images[0].size == (32, 32)
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    with quiet():
        metrics = evaluate(project, "straight", combinations=2, steps=1, image_metrics=False)
    assert metrics.run == "straight" and (root / "eval" / "straight" / "metrics.json").is_file()


def test_a_run_mixed_on_a_base_of_another_family_is_refused(fitted: Path, tiny_sdxl: Path) -> None:
    from creaturekit.generation.mix import Mixer

    with pytest.raises(CreatureKitError, match=r"fitted on an SD 1\.x/2\.x base model, and"):
        Mixer(open_project(fitted), "r1", model=str(tiny_sdxl))


def test_sdxl_attention_resolution_is_checked(discovered: Path, tiny_sdxl: Path) -> None:
    from creaturekit.progress import quiet
    from creaturekit.training.trainer import FitError

    with quiet(), pytest.raises(FitError, match=r"choose one of \[4, 8\]"):
        xl_fit(open_project(discovered), tiny_sdxl, "xl-bad", attn_resolution=16)


def test_bf16_keeps_frozen_weights_half_and_trained_weights_fp32(
    discovered: Path, tiny_sdxl: Path
) -> None:
    """The memory path: text encoders and UNet in bf16, the VAE in fp32 (SDXL's overflows in
    half precision), mapper and LoRA trained in fp32; samples decode under autocast."""
    from creaturekit.progress import quiet
    from creaturekit.training.fit_config import resolve_fit_config
    from creaturekit.training.trainer import Trainer

    flags = {**XL_FIT, "model": str(tiny_sdxl), "precision": "bf16", "steps": 2}
    config = resolve_fit_config("sdxl", flags=flags | {"sample_every": 2, "sample_steps": 2})
    trainer = Trainer(open_project(discovered), config, "xl-bf16")
    with quiet():
        result = trainer.fit()
    base = trainer.base
    frozen = [p for m in (*base.text_encoders, base.unet) for n, p in m.named_parameters()]
    assert {p.dtype for p in frozen if not p.requires_grad} == {torch.bfloat16}
    assert {p.dtype for p in base.unet.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in trainer.mapper.parameters()} == {torch.float32}
    assert {p.dtype for p in base.vae.parameters()} == {torch.float32}
    assert result.loss is not None and np.isfinite(result.loss)
    assert (result.run_dir / "samples" / "step-000002.png").is_file()


def test_studio_composes_on_an_sdxl_run(discovered: Path, tiny_sdxl: Path, tmp_path: Path) -> None:
    """The studio's worker draws with an SDXL run through the same Mixer: no special case."""
    import time

    from starlette.testclient import TestClient

    from creaturekit.studio.app import TOKEN_HEADER, create_app

    root = fit_runs(
        discovered, tmp_path / "proj", tiny_sdxl, {"xl": {"resolution": 32, "attn_resolution": 4}}
    )
    app = create_app(open_project(root), token="t0k3n")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/?token=t0k3n").status_code == 200
        response = client.post(
            "/api/generate",
            json={"parts": {"part0": [[1]]}, "steps": 2},
            headers={TOKEN_HEADER: "t0k3n"},
        )
        assert response.status_code == 202, response.text
        job, deadline = response.json(), time.monotonic() + 120
        while job["state"] not in ("done", "failed", "cancelled") and time.monotonic() < deadline:
            job = client.get(f"/api/jobs/{job['id']}?wait=1").json()
    assert job["state"] == "done", job
    assert list((root / "mixes").glob("*/*.png"))


def test_fit_sdxl_offline_without_weights_says_what_to_do(
    discovered: Path, tmp_path: Path, runner: Any
) -> None:
    from creaturekit.cli import app

    root = shutil.copytree(discovered, tmp_path / "proj", ignore=shutil.ignore_patterns("runs"))
    result = runner.invoke(app, ["fit", "-C", str(root), "--preset", "sdxl", "--model", "sdxl"])
    assert result.exit_code == 1
    assert (
        "Could not find the base model 'stabilityai/stable-diffusion-xl-base-1.0'" in result.stderr
    )
    assert "--model PATH" in result.stderr and "Traceback" not in result.stderr
    assert "Warning" not in result.stderr and not (Path(root) / "runs").exists()


@pytest.mark.weights
def test_real_sdxl_base_takes_part_tokens() -> None:
    """SDXL's real weights, when in the local cache (skipped otherwise): both real text
    encoders (768 + 1280 wide) take the part tokens; the pooled embedding is 1280 wide."""
    from creaturekit.conditioning.base_model import load_base_model
    from creaturekit.conditioning.text import TextConditioning
    from creaturekit.errors import ModelNotFoundError

    try:
        base = load_base_model("sdxl")
    except ModelNotFoundError as err:
        pytest.skip(f"real weights not available offline: {err}")
    conditioning = TextConditioning.of(base)
    assert conditioning.widths == (768, 1280) and base.family == "sdxl"
    conditioning.add_part_tokens(3)
    with torch.no_grad():
        embeds = conditioning.encode(["a photo of a bird"])
    assert embeds.hidden.shape == (1, 77, 2048) and embeds.pooled.shape == (1, 1280)  # type: ignore[union-attr]
