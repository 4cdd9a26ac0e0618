"""Loading a Stable-Diffusion-style base model's components through the one model resolver."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creaturekit.models import ModelRef, load_pretrained, resolve_model


@dataclass
class BaseModel:
    """The pieces of a diffusers SD 1.x/2.x pipeline that stage 2 and 3 use."""

    ref: ModelRef
    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    scheduler: Any  # the training (noise) scheduler

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def load_base_model(model: str, project_root: Path | None = None, dtype: Any = None) -> BaseModel:
    """Load tokenizer, text encoder, VAE, UNet and noise scheduler of ``model``.

    ``model`` is a preset, hub id or folder (relative folders may be inside the project);
    the networks are loaded in ``dtype`` (default float32, whatever the files hold: the
    bundled toy base ships fp16 weights); missing weights raise
    :class:`~creaturekit.errors.ModelNotFoundError`.
    """
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    ref = resolve_model(model, base=project_root)

    def part(loader: Any, sub: str, **kwargs: Any) -> Any:
        return load_pretrained(loader, ref, f"base model's {sub}", subfolder=sub, **kwargs)

    weights = {"torch_dtype": dtype or torch.float32}
    return BaseModel(
        ref=ref,
        tokenizer=part(CLIPTokenizer.from_pretrained, "tokenizer"),
        text_encoder=part(CLIPTextModel.from_pretrained, "text_encoder", **weights),
        vae=part(AutoencoderKL.from_pretrained, "vae", **weights),
        unet=part(UNet2DConditionModel.from_pretrained, "unet", **weights),
        scheduler=part(DDPMScheduler.from_pretrained, "scheduler"),
    )
