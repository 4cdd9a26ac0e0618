"""The toy base model: Stable Diffusion's architecture at toy size, and its captions.

Same components as SD 1.x (CLIP tokenizer and text model, AutoencoderKL, a
cross-attention UNet2DConditionModel, a DDPM noise schedule), sized for 64 px images
on a CPU: the VAE downsamples by 4 (16x16x4 latents); the UNet cross-attends at 16x16
and 8x8. Captions describe a creature's parts and scene in words (never variant ids).
Each component's config is exactly its constructor arguments, kept here as constants.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from creaturekit import fsutil
from creaturekit.toy.world import PARTS, SCENES, variant

IMAGE_SIZE = 64
LATENT_CHANNELS = 4
VAE_FACTOR = 4
SCENE_PHRASES: dict[str, str] = {
    "blue sky": "against a blue sky",
    "starry night": "on a starry night",
    "rippling water": "on rippling water",
    "brick wall": "by a brick wall",
}
"""How a scene is said after the creature; other scenes read "in a <scene>"."""
SD_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "steps_offset": 1,
}
"""Stable Diffusion 1.x's noise schedule."""


@dataclass(frozen=True)
class Architecture:
    """Constructor arguments of every component (diffusers/transformers configs)."""

    vae: dict[str, Any]
    unet: dict[str, Any]
    text: dict[str, Any]  # CLIPTextConfig arguments, vocabulary and special ids excluded
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SD_SCHEDULER))
    tokenizer_merges: int | None = None  # None: all of CLIP's merges (SD's tokenizer)


def _vae(channels: Sequence[int], layers: int, groups: int) -> dict[str, Any]:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": LATENT_CHANNELS,
        "block_out_channels": list(channels),
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "layers_per_block": layers,
        "norm_num_groups": groups,
        "sample_size": IMAGE_SIZE,
    }


def _unet(
    channels: Sequence[int], layers: int, groups: int, cross: int, heads: int
) -> dict[str, Any]:
    return {
        "sample_size": IMAGE_SIZE // VAE_FACTOR,
        "in_channels": LATENT_CHANNELS,
        "out_channels": LATENT_CHANNELS,
        "block_out_channels": list(channels),
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "layers_per_block": layers,
        "norm_num_groups": groups,
        "cross_attention_dim": cross,
        "attention_head_dim": heads,
    }


def _text(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "projection_dim": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
    }


TOY = Architecture(
    vae=_vae((32, 64, 128), layers=1, groups=16),
    unet=_unet((32, 64, 128), layers=1, groups=16, cross=64, heads=2),
    text=_text(64, layers=4, heads=4),
)
"""The shipped toy base model."""
TINY = Architecture(
    vae=_vae((8, 16, 16), layers=1, groups=4),
    unet=_unet((16, 32, 32), layers=1, groups=8, cross=16, heads=2),
    text=_text(16, layers=1, heads=2),
    scheduler=SD_SCHEDULER | {"num_train_timesteps": 100},
    tokenizer_merges=300,
)
"""A few-thousand-parameter version for tests."""


def make_tokenizer(arch: Architecture) -> Any:
    """The real CLIP BPE tokenizer (SD's), built offline."""
    from creaturekit.clip_vocab import clip_tokenizer

    return clip_tokenizer(arch.tokenizer_merges)


def make_text_encoder(arch: Architecture, tokenizer: Any) -> Any:
    """A randomly initialised ``CLIPTextModel`` over the whole tokenizer vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **arch.text,
    )
    return CLIPTextModel(config)


def make_vae(arch: Architecture) -> Any:
    """A randomly initialised ``AutoencoderKL``."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**arch.vae)


def make_unet(arch: Architecture) -> Any:
    """A randomly initialised ``UNet2DConditionModel``."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**arch.unet)


def make_scheduler(arch: Architecture) -> Any:
    """The training noise schedule (SD 1.x's)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**arch.scheduler)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _with_article(words: str) -> str:
    return words if words.endswith("s") else ("an " if words[0] in "aeiou" else "a ") + words


def caption(combo: Sequence[int], scene: int | None, parts: Sequence[str] = PARTS) -> str:
    """A descriptive caption, e.g. "a creature with a round red head, ..., in a snowy field".

    ``combo`` holds one variant id per part of ``PARTS``; only ``parts`` (in that order)
    are named; ``scene`` None leaves the scene out.
    """
    named = [_with_article(variant(p, combo[PARTS.index(p)]).describe(p)) for p in parts]
    text = "a creature"
    if named:
        text += " with " + (", ".join(named[:-1]) + " and " if len(named) > 1 else "") + named[-1]
    if scene is not None:
        name = SCENES[scene]
        text += ", " + SCENE_PHRASES.get(name, f"in a {name}")
    return text


def save_component(module: Any, folder: Path) -> None:
    """``save_pretrained`` a model in fp16 safetensors, replacing ``folder`` atomically."""
    _replace_folder(folder, lambda tmp: half_copy(module).save_pretrained(tmp))


def assemble_pipeline(
    folder: str | os.PathLike[str], *, vae: Any, text_encoder: Any, unet: Any, arch: Architecture
) -> Path:
    """Write a complete StableDiffusionPipeline folder (fp16 safetensors) to ``folder``.

    Every part loads in float32 by default, in diffusers as in creaturekit. The folder
    appears only once complete (written beside it, then renamed into place).
    """
    from diffusers import StableDiffusionPipeline

    pipe: Any = StableDiffusionPipeline(
        vae=half_copy(vae),
        text_encoder=half_copy(text_encoder),
        tokenizer=make_tokenizer(arch),
        unet=half_copy(unet),
        scheduler=make_scheduler(arch),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = Path(folder)

    def write(tmp: Path) -> None:
        pipe.save_pretrained(tmp, safe_serialization=True)
        _load_in_float32(tmp / "text_encoder" / "config.json")

    _replace_folder(folder, write)
    return folder


def _load_in_float32(config: Path) -> None:
    """Record float32 as the text encoder's load dtype (its files stay fp16).

    transformers loads a model in the dtype its config names, diffusers its own models in
    float32 whatever the files hold: with "float16" there, a plain
    ``StableDiffusionPipeline.from_pretrained`` mixed an fp16 text encoder with an fp32
    UNet and failed ("mat1 and mat2 must have the same dtype").
    """
    fsutil.write_json(config, fsutil.read_json(config) | {"dtype": "float32"})


def half_copy(module: Any) -> Any:
    """An fp16 copy of ``module`` (the original is left as it is)."""
    import copy

    return copy.deepcopy(module).to(torch.float16)


def _replace_folder(folder: Path, write: Any) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = fsutil.staging_folder(folder.parent, f".{folder.name}.")
    try:
        write(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
