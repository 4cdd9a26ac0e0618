"""Tiny random Stable-Diffusion-shaped components (diffusers' get_dummy_components idea)."""

from __future__ import annotations

from typing import Any

import torch


def tiny_text_stack(dim: int = 32) -> tuple[Any, Any]:
    """The real CLIP tokenizer (first 300 merges) and a 1-layer CLIP text encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from creaturekit.clip_vocab import clip_tokenizer

    tokenizer = clip_tokenizer(300)
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=dim,
        intermediate_size=2 * dim,
        num_hidden_layers=1,
        num_attention_heads=2,
        projection_dim=dim,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer, CLIPTextModel(config)


def tiny_unet(cross_dim: int = 32, sample_size: int = 8) -> Any:
    """A 2-level UNet2DConditionModel with cross-attention at 8x8 and 4x4."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim,
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=4,
    )
