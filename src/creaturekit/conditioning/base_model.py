"""Loading a base model's components through the one model resolver, and its family.

Two families are supported, told apart by the pipeline class in the model's
``model_index.json`` (never by its name): ``sd`` (Stable Diffusion 1.x/2.x: one CLIP text
encoder) and ``sdxl`` (Stable Diffusion XL: two text encoders, pooled text and size
conditioning).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creaturekit.errors import ConfigError
from creaturekit.models import ModelRef, load_pretrained, resolve_model

#: Pipeline class in ``model_index.json`` -> base-model family.
FAMILIES = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl"}

#: Each family as people call it.
FAMILY_NAMES = {"sd": "SD 1.x/2.x", "sdxl": "SDXL"}

#: The text-encoder (and tokenizer) subfolders of each family, in prompt-embedding order.
TEXT_ENCODERS = {"sd": ("text_encoder",), "sdxl": ("text_encoder", "text_encoder_2")}


@dataclass
class BaseModel:
    """The pieces of a diffusers SD 1.x/2.x or SDXL pipeline that fit and mix use."""

    ref: ModelRef
    family: str  # "sd" or "sdxl"
    tokenizers: tuple[Any, ...]
    text_encoders: tuple[Any, ...]
    vae: Any
    unet: Any
    scheduler: Any  # the training (noise) scheduler
    #: SDXL's pipelines use zeros, not the encoded "", for an empty negative prompt.
    zeros_for_empty_prompt: bool = False

    @property
    def tokenizer(self) -> Any:
        """The first (SD: the only) tokenizer."""
        return self.tokenizers[0]

    @property
    def text_encoder(self) -> Any:
        """The first (SD: the only) text encoder."""
        return self.text_encoders[0]

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def pipeline_index(ref: ModelRef) -> dict[str, Any]:
    """The model's ``model_index.json`` (a missing one raises ModelNotFoundError)."""
    from diffusers import DiffusionPipeline

    with warnings.catch_warnings():  # diffusers passes the hub an argument it deprecated
        warnings.filterwarnings("ignore", "The `local_dir_use_symlinks` argument")
        index: dict[str, Any] = load_pretrained(DiffusionPipeline.load_config, ref, "base model")
    return index


def model_family(ref: ModelRef, index: dict[str, Any] | None = None) -> str:
    """``sd`` or ``sdxl``, from the pipeline class in ``model_index.json``."""
    index = pipeline_index(ref) if index is None else index
    name = index.get("_class_name")
    if name not in FAMILIES:
        raise ConfigError(
            f"The base model {ref.ref!r} is a {name or 'pipeline of unknown kind'}; creaturekit "
            "works on Stable Diffusion 1.x/2.x and SDXL text-to-image pipelines "
            f"({', '.join(FAMILIES)})."
        )
    return FAMILIES[name]


def load_base_model(model: str, project_root: Path | None = None, dtype: Any = None) -> BaseModel:
    """Load the tokenizers, text encoders, VAE, UNet and noise scheduler of ``model``.

    ``model`` is a preset, hub id or folder (relative folders may be inside the project);
    the text encoders and the UNet are loaded in ``dtype`` (default float32, whatever the
    files hold: the bundled toy base ships fp16 weights), the VAE always in float32
    (SDXL's overflows in fp16; it encodes each image once); missing weights raise
    :class:`~creaturekit.errors.ModelNotFoundError`.
    """
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    ref = resolve_model(model, base=project_root)
    index = pipeline_index(ref)
    family = model_family(ref, index)

    def part(loader: Any, sub: str, **kwargs: Any) -> Any:
        return load_pretrained(loader, ref, f"base model's {sub}", subfolder=sub, **kwargs)

    weights = {"torch_dtype": dtype or torch.float32}
    full = {"torch_dtype": torch.float32}
    encoders = TEXT_ENCODERS[family]
    # SDXL's second encoder carries the text projection its pooled output goes through
    classes = {"text_encoder": CLIPTextModel, "text_encoder_2": CLIPTextModelWithProjection}
    return BaseModel(
        ref=ref,
        family=family,
        tokenizers=tuple(
            part(CLIPTokenizer.from_pretrained, sub.replace("text_encoder", "tokenizer"))
            for sub in encoders
        ),
        text_encoders=tuple(part(classes[sub].from_pretrained, sub, **weights) for sub in encoders),
        vae=part(AutoencoderKL.from_pretrained, "vae", **full),
        unet=part(UNet2DConditionModel.from_pretrained, "unet", **weights),
        scheduler=part(DDPMScheduler.from_pretrained, "scheduler"),
        zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", False)),
    )
