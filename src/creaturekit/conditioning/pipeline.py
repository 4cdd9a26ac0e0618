"""Images from part codes: prompt embeddings with the mapper, then a diffusers pipeline.

:func:`part_prompt_embeddings` is the one place a prompt with (part, code) occurrences
becomes text-encoder embeddings; training samples and ``mix`` both go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from creaturekit.conditioning import SCHEDULERS
from creaturekit.conditioning.mapper import TokenMapper
from creaturekit.conditioning.tokens import encode_with_parts
from creaturekit.errors import CreatureKitError


def tokenize(tokenizer: Any, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's maximum length (77 for CLIP)."""
    return tokenizer(
        list(prompts),
        padding="max_length",
        truncation=True,
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def part_prompt_embeddings(
    text_encoder: Any,
    tokenizer: Any,
    part_token_ids: Sequence[int],
    mapper: TokenMapper,
    prompts: Sequence[str],
    codes: Sequence[Sequence[int]],
) -> torch.Tensor:
    """Text-encoder hidden states of prompts whose part tokens carry ``codes``."""
    hidden, _ = encode_with_parts(
        text_encoder, tokenize(tokenizer, prompts), part_token_ids, codes, mapper
    )
    return hidden


def build_pipeline(base: Any, scheduler: str = "ddim") -> Any:
    """A ``StableDiffusionPipeline`` sharing ``base``'s modules, with the named sampler."""
    import diffusers
    from diffusers import StableDiffusionPipeline

    if scheduler not in SCHEDULERS:
        raise CreatureKitError(
            f"Unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}."
        )
    sampler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(base.scheduler.config)
    pipe: Any = StableDiffusionPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=base.unet,
        scheduler=sampler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate(
    pipe: Any,
    mapper: TokenMapper,
    part_token_ids: Sequence[int],
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
    embeds = part_prompt_embeddings(
        pipe.text_encoder, pipe.tokenizer, part_token_ids, mapper, prompts, codes
    )
    negative_ids = tokenize(pipe.tokenizer, [negative])
    negative_embeds = pipe.text_encoder(negative_ids.to(pipe.text_encoder.device))[0]
    images = []
    hook = None if on_step is None else _step_hook(on_step)
    for i, seed in enumerate(seeds):
        out = pipe(
            prompt_embeds=embeds[i : i + 1],
            negative_prompt_embeds=negative_embeds,
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
