"""The a1111-format export through the loading code of kohya sd-scripts, ComfyUI and the
A1111 web UI (re-implemented in ``tests/consumers.py``, sources and versions named there).

The base model has Stable Diffusion 1.5's UNet layout: its config with narrower channels
(32/64/128/128 instead of 320/640/1280/1280, the same ratios, so the same shortcut
convolutions) and a 32-wide text encoder, so every module and weight has SD 1.5's name
(checked against SD 1.5's own config, built on the meta device) while a fit runs in
seconds on a CPU. Key names do not depend on widths; the full-width model (860M
parameters) would take minutes to build and fit here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from creaturekit import fsutil
from creaturekit.generation.export import export_run
from creaturekit.project import open_project
from tests.consumers import (
    SD15_COMFY_CONFIG,
    a1111_load_network,
    comfy_key_map,
    comfy_load_embed,
    comfy_load_lora,
    kohya_deltas,
    kohya_modules,
    ldm_state_dict,
    unet_to_ldm,
)
from tests.helpers import fit_runs
from tests.tiny_sd import tiny_text_stack, tiny_vae

#: stable-diffusion-v1-5/stable-diffusion-v1-5 unet/config.json
SD15_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
NARROW = {"block_out_channels": [32, 64, 128, 128], "cross_attention_dim": 32, "sample_size": 16}


def sd15_layout_unet(**changes: Any) -> Any:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**(SD15_UNET | changes))


@pytest.fixture(scope="module")
def exports(discovered: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run fitted on the SD 1.5-layout base, exported in both formats."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from creaturekit.models import trust_model_path

    tmp = tmp_path_factory.mktemp("consumers")
    tokenizer, text_encoder = tiny_text_stack()
    base = tmp / "sd15-layout"
    StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=sd15_layout_unet(**NARROW),
        scheduler=DDPMScheduler(num_train_timesteps=100, clip_sample=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(base)
    trust_model_path(str(base))
    settings = {"resolution": 32, "steps": 3, "checkpoint_every": 3}  # SD 1.5 downsamples 8x
    root = fit_runs(discovered, tmp / "proj", base, {"sd": settings})
    project = open_project(root)
    return {
        "base": base,
        "a1111": export_run(project, "a1111", out=tmp / "a1111"),
        "diffusers": export_run(project, "diffusers", out=tmp / "diffusers"),
    }


@pytest.fixture(scope="module")
def diffusers_deltas(exports: dict[str, Path]) -> dict[str, torch.Tensor]:
    """The weight change of every LoRA module when diffusers loads the diffusers export."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        exports["base"], safety_checker=None, requires_safety_checker=False
    )
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.load_lora_weights(exports["diffusers"])
    pipe.fuse_lora()
    pipe.unload_lora_weights()  # the fused weights stay
    after = pipe.unet.state_dict()
    changed = {
        k.removesuffix(".weight"): after[k] - before[k] for k in before if k.endswith("weight")
    }
    deltas = {k: v for k, v in changed.items() if v.abs().max() > 0}
    assert len(deltas) == 16 * 4 * 2  # SD 1.5's 16 transformer blocks: q, k, v, out of attn1/2
    return deltas


def test_the_base_has_sd15_names_and_ldm_layout(exports: dict[str, Path]) -> None:
    with torch.device("meta"):
        real = sd15_layout_unet()  # SD 1.5 itself, without memory
    assert_real_names_and_ldm_layout(unet_of(exports["base"]), real, SD15_COMFY_CONFIG)


def assert_real_names_and_ldm_layout(unet: Any, real: Any, config: dict[str, Any]) -> None:
    """``unet`` has every module and weight name of ``real``, and the LDM names ComfyUI maps
    to (``config``) are those of the original checkpoints: diffusers' own single-file
    loader reads them back into exactly this UNet."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    assert unet.state_dict().keys() == real.state_dict().keys()
    assert [n for n, _ in unet.named_modules()] == [n for n, _ in real.named_modules()]
    back = convert_ldm_unet_checkpoint(ldm_state_dict(unet, config), dict(unet.config))
    assert back.keys() == unet.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in unet.state_dict().items())


def lora_files(exports: dict[str, Path], run: str = "sd") -> dict[str, dict[str, torch.Tensor]]:
    """The a1111 export's LoRA and bundle files of ``run``."""
    return {
        name: fsutil.load_safetensors(exports["a1111"] / f"{run}_{name}.safetensors")
        for name in ("lora", "bundle")
    }


def test_kohya_loads_every_key(
    exports: dict[str, Path], diffusers_deltas: dict[str, torch.Tensor]
) -> None:
    modules = kohya_modules(unet_of(exports["base"]))
    files = lora_files(exports)
    deltas, unused = kohya_deltas(files["lora"], modules)
    assert unused == [] and len(deltas) == len(diffusers_deltas)
    in_bundle, unused = kohya_deltas(files["bundle"], modules)  # its vectors: unexpected keys
    assert in_bundle.keys() == deltas.keys() and all(k.startswith("bundle_emb.") for k in unused)
    by_kohya = {"lora_unet_" + m.replace(".", "_"): m for m in diffusers_deltas}
    for name, delta in deltas.items():
        assert modules[name].weight.shape == delta.shape
        torch.testing.assert_close(delta, diffusers_deltas[by_kohya[name]], atol=1e-6, rtol=1e-4)


def unet_of(base: Path) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(base, subfolder="unet")


def assert_same_deltas(deltas: dict[str, Any], expected: dict[str, torch.Tensor]) -> None:
    """``deltas`` (by diffusers module) are the diffusers export's, module by module."""
    assert deltas.keys() == expected.keys()
    for module, delta in deltas.items():
        torch.testing.assert_close(delta, expected[module], atol=1e-6, rtol=1e-4)


def comfy_patches(
    base: Path, config: dict[str, Any], lora: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """ComfyUI's weight patches of ``lora`` on the UNet of ``base`` (with ComfyUI's
    ``config``), by diffusers module, each checked to fit a real weight; and the keys it
    logs as not loaded."""
    unet = unet_of(base)
    ldm = {k.removeprefix("model."): v for k, v in ldm_state_dict(unet, config).items()}
    patches, not_loaded = comfy_load_lora(lora, comfy_key_map(list(ldm), config))
    to_diffusers = {f"diffusion_model.{v}.weight": k for k, v in unet_to_ldm(config).items()}
    for target, delta in patches.items():
        assert ldm[target].shape == delta.shape  # a real weight of the model
    return {to_diffusers[t]: d for t, d in patches.items()}, not_loaded


def a1111_network(
    base: Path, config: dict[str, Any], lora: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[str]]:
    """The web UI's ``load_network`` of ``lora`` on the LDM model of ``base``'s UNet:
    (weight changes by diffusers module, bundled embeddings, unmatched keys)."""
    ldm = ldm_state_dict(unet_of(base), config)
    # network_layer_mapping: the LDM model's modules, `diffusion_model.` first, `_` for `.`
    layers = {k.removeprefix("model.").rpartition(".")[0].replace(".", "_") for k in ldm}
    to_diffusers = {
        f"diffusion_model_{v}".replace(".", "_"): k for k, v in unet_to_ldm(config).items()
    }
    deltas, embeddings, unmatched = a1111_load_network(lora, layers)
    return {to_diffusers[n]: d for n, d in deltas.items()}, embeddings, unmatched


def test_comfyui_loads_every_key_and_embedding(
    exports: dict[str, Path], diffusers_deltas: dict[str, torch.Tensor]
) -> None:
    patches, not_loaded = comfy_patches(
        exports["base"], SD15_COMFY_CONFIG, lora_files(exports)["lora"]
    )
    assert not_loaded == []
    assert_same_deltas(patches, diffusers_deltas)
    _, bundled = comfy_patches(exports["base"], SD15_COMFY_CONFIG, lora_files(exports)["bundle"])
    assert bundled and all(k.startswith("bundle_emb.") for k in bundled)  # logged, not used

    vectors = diffusers_vectors(exports)
    for name, vector in vectors.items():
        embed = comfy_load_embed(name, exports["a1111"] / "embeddings")
        assert embed is not None and torch.equal(embed, vector[None])
    assert comfy_load_embed("sd_part0_9", exports["a1111"] / "embeddings") is None


def test_a1111_loads_every_key_and_the_bundled_embeddings(
    exports: dict[str, Path], diffusers_deltas: dict[str, torch.Tensor]
) -> None:
    files = lora_files(exports)
    deltas, embeddings, unmatched = a1111_network(exports["base"], SD15_COMFY_CONFIG, files["lora"])
    assert unmatched == [] and embeddings == {}
    assert_same_deltas(deltas, diffusers_deltas)

    deltas, embeddings, unmatched = a1111_network(
        exports["base"], SD15_COMFY_CONFIG, files["bundle"]
    )
    assert_same_deltas(deltas, diffusers_deltas)  # the same LoRA ...
    assert all(k.startswith("bundle_emb.") for k in unmatched)  # ... plus the vocabulary
    vectors = diffusers_vectors(exports)
    assert embeddings.keys() == vectors.keys()
    assert all(torch.equal(embeddings[n], v[None]) for n, v in vectors.items())


def diffusers_vectors(exports: dict[str, Path]) -> dict[str, torch.Tensor]:
    """``{name: vector}`` of the diffusers export (``{"<name>": vector}`` per file)."""
    out = {}
    for f in (exports["diffusers"] / "embeddings").glob("*.safetensors"):
        ((token, vector),) = fsutil.load_safetensors(f).items()
        out[token.strip("<>")] = vector
    return out
