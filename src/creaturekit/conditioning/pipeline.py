"""Images from part codes: prompt embeddings with the mapper, then a diffusers pipeline.

:func:`part_prompt_embeddings` is the one place a prompt with (part, code) occurrences
becomes the pipeline's embeddings; training samples, ``mix`` and the exports' checks all
go through it (via :class:`~creaturekit.conditioning.text.TextConditioning`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from creaturekit.conditioning import SCHEDULERS
from creaturekit.conditioning.base_model import BaseModel
from creaturekit.conditioning.mapper import TokenMapper
from creaturekit.conditioning.text import PromptEmbeddings, TextConditioning
from creaturekit.errors import CreatureKitError

#: The diffusers text-to-image pipeline class of each base-model family.
PIPELINES = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}


@torch.no_grad()
def part_prompt_embeddings(
    conditioning: TextConditioning,
    mapper: TokenMapper,
    prompts: Sequence[str],
    codes: Sequence[Sequence[int]],
) -> PromptEmbeddings:
    """Text embeddings of prompts whose part tokens carry ``codes``."""
    return conditioning.encode(prompts, codes, mapper)


def build_pipeline(base: BaseModel, scheduler: str = "ddim") -> Any:
    """The family's diffusers pipeline sharing ``base``'s modules, with the named sampler."""
    import diffusers

    if scheduler not in SCHEDULERS:
        raise CreatureKitError(
            f"Unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}."
        )
    sampler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(base.scheduler.config)
    modules: dict[str, Any] = {"vae": base.vae, "unet": base.unet, "scheduler": sampler}
    for i, (tokenizer, encoder) in enumerate(zip(base.tokenizers, base.text_encoders, strict=True)):
        suffix = f"_{i + 1}" if i else ""
        modules[f"tokenizer{suffix}"], modules[f"text_encoder{suffix}"] = tokenizer, encoder
    if base.family == "sd":
        modules.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe: Any = getattr(diffusers, PIPELINES[base.family])(**modules)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate(
    pipe: Any,
    conditioning: TextConditioning,
    mapper: TokenMapper,
    prompts: Sequence[str],
    codes: Sequence[Sequence[int]],
    seeds: Sequence[int],
    *,
    size: int,
    steps: int,
    guidance: float,
    negative: str,
    on_step: Callable[[], None] | None = None,
) -> list[Image.Image]:
    """One image per (prompt, codes, seed); the same seed gives the same image.

    ``on_step`` is called after every denoising step (progress; it may raise to stop).
    """
    embeds = part_prompt_embeddings(conditioning, mapper, prompts, codes)
    negative_embeds = conditioning.negative(negative)
    images = []
    hook = None if on_step is None else _step_hook(on_step)
    for i, seed in enumerate(seeds):
        pooled = {}
        if embeds.pooled is not None:
            pooled = {
                "pooled_prompt_embeds": embeds.pooled[i : i + 1],
                "negative_pooled_prompt_embeds": negative_embeds.pooled,
            }
        out = pipe(
            prompt_embeds=embeds.hidden[i : i + 1],
            negative_prompt_embeds=negative_embeds.hidden,
            **pooled,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=size,
            width=size,
            generator=torch.Generator().manual_seed(seed),
            callback_on_step_end=hook,
        )
        images.append(out.images[0])
    return images


def _step_hook(on_step: Callable[[], None]) -> Callable[..., dict[str, Any]]:
    """``on_step`` as diffusers' ``callback_on_step_end`` (which must return its kwargs)."""

    def hook(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        on_step()
        return kwargs

    return hook


def contact_sheet(images: Sequence[Image.Image], columns: int = 4) -> Image.Image:
    """Images side by side in a grid."""
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (w * min(columns, len(images)), h * rows), "white")
    for i, im in enumerate(images):
        sheet.paste(im, ((i % columns) * w, (i // columns) * h))
    return sheet


def is_blank(image: Image.Image) -> bool:
    """True for an all-black (NaN-produced) or constant image."""
    arr = np.asarray(image)
    return bool(arr.max() == arr.min())
