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


def tiny_vae() -> Any:
    """A 2-level AutoencoderKL (downsampling 2) with 4 latent channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=16,
    )


def save_tiny_dinov2(folder: Any) -> Any:
    """A random 1-layer DINOv2 (patch 8, 32 px) saved in ``folder`` like a downloaded one."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        patch_size=8, image_size=32,
    )  # fmt: skip
    Dinov2Model(config).save_pretrained(folder)
    return folder


def save_tiny_pipeline(folder: Any) -> Any:
    """A complete StableDiffusionPipeline folder of tiny random components."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    tokenizer, text_encoder = tiny_text_stack()
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=tiny_unet(),
        scheduler=DDPMScheduler(num_train_timesteps=100, clip_sample=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def tiny_sdxl_unet(
    cross_dim: int = 80, pooled_dim: int = 48, transformer_layers: tuple[int, ...] = (1, 1, 2)
) -> Any:
    """A 3-level SDXL-shaped UNet: no cross-attention at the top level, two layers per
    block, ``transformer_layers`` per level (SDXL's own: 1, 2, 10), and SDXL's "text_time"
    addition embedding (pooled text + sizes)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=transformer_layers,
        layers_per_block=2,
        cross_attention_dim=cross_dim,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + pooled_dim,
        norm_num_groups=8,
    )


def save_tiny_sdxl_pipeline(folder: Any) -> Any:
    """A complete StableDiffusionXLPipeline folder of tiny random components: CLIP-L-like
    (32 wide) and OpenCLIP-G-like (48 wide, with projection) text encoders of different
    widths, so a mix-up of the two shows."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer, text_encoder = tiny_text_stack(32)
    tokenizer_2, _ = tiny_text_stack(32)
    tokenizer_2.pad_token = "!"  # as SDXL's second tokenizer
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=len(tokenizer_2),
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=48,
            max_position_embeddings=77,
            bos_token_id=tokenizer_2.bos_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
            pad_token_id=tokenizer_2.pad_token_id,
        )
    )
    pipe = StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=tiny_sdxl_unet(),
        scheduler=EulerDiscreteScheduler(
            num_train_timesteps=100, beta_schedule="scaled_linear", steps_offset=1
        ),
    )
    pipe.save_pretrained(folder)
    return folder


def discovered_toy_project(root: Any) -> Any:
    """A 5-species toy project in ``root`` with an effnet-kmeans discovery (2 parts, K=2)."""
    from creaturekit.discovery.discover import discover
    from creaturekit.progress import quiet
    from creaturekit.project import open_project
    from creaturekit.toy.dataset import create_toy_project

    with quiet():
        project = create_toy_project(root, species=5, per_species=2, seed=0)
        discover(
            project,
            "effnet-kmeans",
            report=False,
            parts=2,
            subconcepts=2,
            bg_subconcepts=2,
            image_size=64,
        )
    return open_project(root)
