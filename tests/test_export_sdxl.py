"""Exports of an SDXL run (issue 19) through the loaders of kohya sd-scripts, ComfyUI, the
A1111 web UI (``tests/consumers.py``) and diffusers' ``StableDiffusionXLPipeline``, and
``import-run`` back.

The base has SDXL's real UNet structure (its config: 3 levels, 2 layers per block, 1/2/10
transformer blocks, linear projections, the text_time addition embedding) with narrow
channels (32/64/128 instead of 320/640/1280, 80-wide context), so every module has SDXL's
name (checked against SDXL's own config on the meta device) while a fit runs on a CPU;
the text encoders and VAE are the tiny SDXL pipeline's (32 + 48 wide).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from creaturekit import fsutil
from creaturekit.cli import app
from creaturekit.generation.export import export_run
from creaturekit.generation.kohya import diffusers_to_kohya, kohya_to_diffusers, sgm_blocks
from creaturekit.generation.mix import Mixer
from creaturekit.project import open_project
from tests.consumers import (
    SD15_COMFY_CONFIG,
    SDXL_COMFY_CONFIG,
    a1111_embeddings,
    a1111_sd_version,
    comfy_load_embed,
    kohya_deltas,
    kohya_sdxl_modules,
    unet_to_ldm,
)
from tests.helpers import fit_runs
from tests.test_export_consumers import (
    SD15_UNET,
    a1111_network,
    assert_real_names_and_ldm_layout,
    assert_same_deltas,
    comfy_patches,
    unet_of,
)
from tests.test_export_consumers import lora_files as consumer_lora_files

#: stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
#: Narrow channels, the tiny encoders' 32 + 48 context and pooled 48 + 6 sizes x 8.
NARROW = {
    "block_out_channels": [32, 64, 128],
    "attention_head_dim": [1, 2, 4],
    "cross_attention_dim": 80,
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 6 * 8 + 48,
    "sample_size": 16,
}
#: SDXL's 70 transformer blocks (2x1 + 2x2 + ... see the config): q, k, v, out of attn1/2.
LORA_MODULES = (2 * 2 + 2 * 10 + 10 + 3 * 2 + 3 * 10) * 4 * 2
FAST = {"steps": 2, "size": 32}


def sdxl_layout_unet(**changes: Any) -> Any:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**(SDXL_UNET | changes))


@pytest.fixture(scope="module")
def exports(
    discovered: Path, tiny_sdxl: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """A run fitted on the SDXL-layout base, exported in both formats."""
    from diffusers import StableDiffusionXLPipeline

    from creaturekit.models import trust_model_path

    tmp = tmp_path_factory.mktemp("sdxl-consumers")
    base = tmp / "sdxl-layout"
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    pipe.unet = sdxl_layout_unet(**NARROW)
    pipe.save_pretrained(base)
    trust_model_path(str(base))
    settings = {"resolution": 32, "attn_resolution": 4, "steps": 3, "checkpoint_every": 3}
    tokens_only = settings | {"rank": 0, "steps": 1, "checkpoint_every": 1}
    root = fit_runs(discovered, tmp / "proj", base, {"xl": settings, "xl0": tokens_only})
    project = open_project(root)
    return {
        "base": base,
        "project": root,
        "a1111": export_run(project, "a1111", run="xl", out=tmp / "a1111"),
        "diffusers": export_run(project, "diffusers", run="xl", out=tmp / "diffusers"),
    }


def plain_pipeline(base: Path) -> Any:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(base)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def fused_deltas(base: Path, lora: Path) -> dict[str, torch.Tensor]:
    """The weight change of every UNet module when diffusers loads ``lora``."""
    pipe = plain_pipeline(base)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.load_lora_weights(lora)
    pipe.fuse_lora()
    pipe.unload_lora_weights()  # the fused weights stay
    after = pipe.unet.state_dict()
    changed = {
        k.removesuffix(".weight"): after[k] - before[k] for k in before if k.endswith("weight")
    }
    return {k: v for k, v in changed.items() if v.abs().max() > 0}


@pytest.fixture(scope="module")
def diffusers_deltas(exports: dict[str, Path]) -> dict[str, torch.Tensor]:
    deltas = fused_deltas(exports["base"], exports["diffusers"])
    assert len(deltas) == LORA_MODULES
    return deltas


def test_sgm_blocks_follow_the_unet_config() -> None:
    """The original names come from the config: for SDXL and SD 1.5 (built on the meta
    device) they are those ComfyUI's ``unet_to_diffusers`` gives every attention block."""
    for config, comfy in ((SDXL_UNET, SDXL_COMFY_CONFIG), (SD15_UNET, SD15_COMFY_CONFIG)):
        expected = {
            k.removesuffix(".proj_in"): v.removesuffix(".proj_in")
            for k, v in unet_to_ldm(comfy).items()
            if k.endswith("proj_in")
        }
        assert sgm_blocks(config) == expected
    assert sgm_blocks(SDXL_UNET)["down_blocks.1.attentions.0"] == "input_blocks.4.1"
    assert sgm_blocks(SDXL_UNET)["up_blocks.1.attentions.2"] == "output_blocks.5.1"
    assert "down_blocks.0.attentions.0" not in sgm_blocks(SDXL_UNET)  # no attention at 1/8


def test_the_base_has_sdxl_names_and_ldm_layout(exports: dict[str, Path]) -> None:
    with torch.device("meta"):
        real = sdxl_layout_unet()  # SDXL itself, without memory
    assert_real_names_and_ldm_layout(unet_of(exports["base"]), real, SDXL_COMFY_CONFIG)


def lora_files(exports: dict[str, Path]) -> dict[str, dict[str, torch.Tensor]]:
    return consumer_lora_files(exports, "xl")


def test_sdxl_lora_has_kohyas_original_names_and_metadata(exports: dict[str, Path]) -> None:
    lora = lora_files(exports)["lora"]
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight" in lora
    assert "lora_unet_middle_block_1_transformer_blocks_9_attn2_to_out_0.alpha" in lora
    assert "lora_unet_output_blocks_0_1_transformer_blocks_9_attn2_to_v.lora_up.weight" in lora
    assert not any("down_blocks" in k or "up_blocks" in k or "mid_block" in k for k in lora)
    assert len(lora) == LORA_MODULES * 3
    for stem in ("xl_lora", "xl_bundle"):
        meta = fsutil.safetensors_metadata(exports["a1111"] / f"{stem}.safetensors")
        assert meta["ss_base_model_version"] == "sdxl_base_v1-0" and meta["ss_v2"] == "False"
        assert a1111_sd_version(meta) == "SDXL"
        assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
        assert (
            meta["modelspec.implementation"] == "https://github.com/Stability-AI/generative-models"
        )
        assert meta["modelspec.resolution"] == "32x32" and meta["ss_resolution"] == "(32, 32)"
        assert meta["ss_sd_model_name"] == "sdxl-layout"
    readme = (exports["a1111"] / "README.md").read_text()
    assert "(SDXL)" in readme and "text_encoder=pipe.text_encoder_2" in readme


def test_kohya_loads_every_key(
    exports: dict[str, Path], diffusers_deltas: dict[str, torch.Tensor]
) -> None:
    modules = kohya_sdxl_modules(unet_of(exports["base"]), SDXL_COMFY_CONFIG)
    files = lora_files(exports)
    deltas, unused = kohya_deltas(files["lora"], modules)
    assert unused == [] and len(deltas) == len(diffusers_deltas)
    in_bundle, unused = kohya_deltas(files["bundle"], modules)
    assert in_bundle.keys() == deltas.keys() and all(k.startswith("bundle_emb.") for k in unused)
    by_kohya = {
        "lora_unet_" + ldm.replace(".", "_"): module
        for module, ldm in unet_to_ldm(SDXL_COMFY_CONFIG).items()
    }
    for name, delta in deltas.items():
        assert modules[name].weight.shape == delta.shape
        torch.testing.assert_close(delta, diffusers_deltas[by_kohya[name]], atol=1e-6, rtol=1e-4)


def test_comfyui_loads_every_key_and_both_encoders_embeddings(
    exports: dict[str, Path], diffusers_deltas: dict[str, torch.Tensor]
) -> None:
    patches, not_loaded = comfy_patches(
        exports["base"], SDXL_COMFY_CONFIG, lora_files(exports)["lora"]
    )
    assert not_loaded == []
    assert_same_deltas(patches, diffusers_deltas)
    vectors = mixer_vectors(exports)
    folder = exports["a1111"] / "embeddings"
    for name, vector in vectors.items():  # SDXL's two tokenizers, by their embedding_key
        clip_l, clip_g = comfy_load_embed(name, folder), comfy_load_embed(name, folder, "clip_g")
        assert clip_l is not None and clip_g is not None
        assert clip_l.shape == (1, 32) and clip_g.shape == (1, 48)
        assert torch.equal(torch.cat([clip_l, clip_g], -1), vector[None])


def test_a1111_loads_every_key_and_the_bundled_sdxl_embeddings(
    exports: dict[str, Path], diffusers_deltas: dict[str, torch.Tensor]
) -> None:
    files = lora_files(exports)
    deltas, embeddings, unmatched = a1111_network(exports["base"], SDXL_COMFY_CONFIG, files["lora"])
    assert unmatched == [] and embeddings == {}
    assert_same_deltas(deltas, diffusers_deltas)
    deltas, bundled, unmatched = a1111_network(exports["base"], SDXL_COMFY_CONFIG, files["bundle"])
    assert_same_deltas(deltas, diffusers_deltas)
    assert all(k.startswith("bundle_emb.") for k in unmatched)
    per_file = a1111_embeddings(exports["a1111"])
    vectors = mixer_vectors(exports)
    assert bundled.keys() == per_file.keys() == vectors.keys()
    for name, vector in vectors.items():
        for embedding in (bundled[name], per_file[name]):
            assert isinstance(embedding, dict) and embedding.keys() == {"clip_l", "clip_g"}
            both = torch.cat([embedding["clip_l"], embedding["clip_g"]], -1)
            assert torch.equal(both, vector[None])


def test_diffusers_reads_the_a1111_sdxl_lora_too(
    exports: dict[str, Path], diffusers_deltas: dict[str, torch.Tensor]
) -> None:
    deltas = fused_deltas(exports["base"], exports["a1111"] / "xl_lora.safetensors")
    assert_same_deltas(deltas, diffusers_deltas)


def mixer_vectors(exports: dict[str, Path]) -> dict[str, torch.Tensor]:
    """``{token name: the run's vector}`` (both encoders' parts side by side)."""
    from creaturekit.conditioning.mapper import TokenMapper
    from creaturekit.generation.export import token_names, vocabulary_vectors
    from creaturekit.generation.requests import Vocabulary
    from creaturekit.training.run import RunFolder

    project = open_project(exports["project"])
    folder = RunFolder(project.runs_dir / "xl")
    vocab = Vocabulary(folder.vocab(), project.config)
    names = token_names(vocab, "xl")
    mapper = TokenMapper.load(folder.mapper)
    return {names[k]: v for k, v in vocabulary_vectors(mapper, vocab).items()}


@pytest.mark.parametrize("fmt", ["diffusers", "a1111"])
def test_sdxl_pipeline_loads_the_export_as_the_readme_says(
    fmt: str, exports: dict[str, Path]
) -> None:
    """The README's Python lines, run in the export folder on a plain
    ``StableDiffusionXLPipeline``: the same prompt embeddings (both encoders, pooled) as
    creaturekit's own encoding, and (diffusers export) the same image as ``mix``."""
    import os
    import re

    from diffusers import DDIMScheduler

    project = open_project(exports["project"])
    mixer = Mixer(project, "xl")
    request = {"part0": [1], "bg": [0]}
    text, requests = mixer.requests(request)
    with torch.no_grad():
        ours = mixer.conditioning.encode([text], [[r.code for r in requests]], mixer.mapper)

    pipe = plain_pipeline(exports["base"])
    readme = (exports[fmt] / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", readme, re.S)[-1]
    cwd = os.getcwd()
    try:
        os.chdir(exports[fmt])
        exec(code, {"pipe": pipe})
    finally:
        os.chdir(cwd)
    token = "<{}>" if fmt == "diffusers" else "{}"
    prompt = f"{token.format('xl_part0_1')} {token.format('xl_bg_0')}"  # the toy template
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False)
    assert torch.allclose(ours.hidden, embeds, atol=2e-6)
    assert torch.allclose(ours.pooled, pooled, atol=2e-6)  # type: ignore[arg-type]
    if fmt == "a1111":
        return
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    negative = project.config.mix.negative
    image = pipe(
        prompt,
        negative_prompt=negative or None,  # SDXL: zeros for no negative prompt, as mix
        guidance_scale=project.config.mix.guidance,
        num_inference_steps=2,
        height=32,
        width=32,
        generator=torch.Generator().manual_seed(5),
    ).images[0]
    mixed = mixer(request, seed=5, **FAST).images[0]
    assert np.abs(np.asarray(image, np.int16) - np.asarray(mixed, np.int16)).max() <= 1


@pytest.mark.parametrize("fmt", ["a1111", "diffusers"])
def test_import_run_of_an_sdxl_export_mixes_like_the_original(
    fmt: str, exports: dict[str, Path], tmp_path: Path, runner: CliRunner
) -> None:
    original = exports["project"]
    source = tmp_path / "proj"
    shutil.copytree(original, source, ignore=shutil.ignore_patterns("runs"))
    result = runner.invoke(app, ["import-run", "-C", str(source), str(exports[fmt])])
    assert result.exit_code == 0, result.output
    lora = "pytorch_lora_weights.safetensors"
    before = fsutil.load_safetensors(original / "runs" / "xl" / lora)
    back = fsutil.load_safetensors(source / "runs" / "xl" / lora)
    assert back.keys() == before.keys() and all(torch.equal(back[k], before[k]) for k in back)
    request = {"part0": [1], "bg": [0]}
    ours = Mixer(open_project(source), "xl")(request, seed=4, **FAST).images[0]
    theirs = Mixer(open_project(original), "xl")(request, seed=4, **FAST).images[0]
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_sgm_keys_need_the_unet_config(exports: dict[str, Path]) -> None:
    from creaturekit.errors import CreatureKitError

    lora = lora_files(exports)["lora"]
    with pytest.raises(CreatureKitError, match="reading it needs the UNet's config"):
        kohya_to_diffusers(lora)
    blocks = sgm_blocks(SDXL_UNET)
    back = kohya_to_diffusers(lora, blocks)
    state = fsutil.load_safetensors(
        exports["project"] / "runs" / "xl" / "pytorch_lora_weights.safetensors"
    )
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    with pytest.raises(CreatureKitError, match=r"'unet\.conv_in\.lora\.down\.weight' is in no"):
        diffusers_to_kohya({"unet.conv_in.lora.down.weight": torch.ones(4, 4)}, 4, blocks)
    shallow = sgm_blocks(SDXL_UNET | {"layers_per_block": 1})  # another UNet's blocks
    with pytest.raises(CreatureKitError, match="the base model's UNet does not have"):
        kohya_to_diffusers(lora, shallow)


def test_sdxl_lora_export_and_import_without_the_base_model_say_what_to_do(
    exports: dict[str, Path], tmp_path: Path, runner: CliRunner
) -> None:
    """The a1111 LoRA's names come from the base model's UNet config: where the run's base
    model is gone, export and import-run say so in one sentence and write nothing; both
    take the base model from --model."""
    root = tmp_path / "proj"
    shutil.copytree(exports["project"], root)
    config = root / "runs" / "xl" / "config.toml"
    config.write_text(config.read_text().replace(str(exports["base"]), "./models/gone"))
    out = tmp_path / "out"
    command = ["export", "-C", str(root), "--run", "xl", "--format", "a1111", "--out", str(out)]
    result = runner.invoke(app, command)
    assert result.exit_code == 1 and "Traceback" not in result.output
    said = "An SDXL run's a1111 LoRA is named from its base model's UNet config, which could"
    assert said in result.stderr and "--model" in result.stderr and not out.exists()
    result = runner.invoke(app, [*command, "--model", str(exports["base"])])
    assert result.exit_code == 0, result.output
    exported = fsutil.load_safetensors(out / "xl_lora.safetensors")
    assert exported.keys() == lora_files(exports)["lora"].keys()

    # a run without a LoRA (rank 0) has no module names to read: its export needs no base
    config = root / "runs" / "xl0" / "config.toml"
    config.write_text(config.read_text().replace(str(exports["base"]), "./models/gone"))
    tokens_only = export_run(open_project(root), "a1111", run="xl0", out=tmp_path / "xl0")
    assert (
        not list(tokens_only.glob("*lora*"))
        and "LoRA: none" in (tokens_only / "README.md").read_text()
    )
    bundle = fsutil.load_safetensors(tokens_only / "xl0_bundle.safetensors")
    assert {k.rpartition(".")[2] for k in bundle} == {"clip_l", "clip_g"}
    assert len(bundle) == 2 * len(list((tokens_only / "embeddings").iterdir()))

    shutil.rmtree(root / "runs")
    shared = tmp_path / "shared"
    shutil.copytree(exports["a1111"], shared)
    exported = shared / "creaturekit-run" / "config.toml"
    exported.write_text(exported.read_text().replace(str(exports["base"]), "./models/gone"))
    result = runner.invoke(app, ["import-run", "-C", str(root), str(shared)])
    assert result.exit_code == 1 and said in result.stderr and "--model" in result.stderr
    assert not (root / "runs" / "xl").exists()
    result = runner.invoke(
        app, ["import-run", "-C", str(root), str(shared), "--model", str(exports["base"])]
    )
    assert result.exit_code == 0, result.output
    lora = "pytorch_lora_weights.safetensors"
    before = fsutil.load_safetensors(exports["project"] / "runs" / "xl" / lora)
    back = fsutil.load_safetensors(root / "runs" / "xl" / lora)
    assert back.keys() == before.keys() and all(torch.equal(back[k], before[k]) for k in back)
