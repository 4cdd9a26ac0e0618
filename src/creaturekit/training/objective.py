"""One training objective evaluation: noise, encode with part tokens, denoise, both losses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from creaturekit.conditioning.mapper import TokenMapper
from creaturekit.conditioning.text import TextConditioning
from creaturekit.training.attention import AttentionStore
from creaturekit.training.losses import (
    attention_loss,
    diffusion_loss,
    min_snr_weights,
    part_attention,
)

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def add_lora(
    unet: Any, rank: int, alpha: int | None = None, targets: Sequence[str] = LORA_TARGETS
) -> list[torch.nn.Parameter]:
    """Freeze ``unet`` and add a peft LoRA adapter on its attention projections.

    Returns the trainable LoRA parameters.
    """
    unet.requires_grad_(False)
    unet.add_adapter(lora_config(rank, alpha, targets))
    return [p for p in unet.parameters() if p.requires_grad]


def lora_targets(layers: str) -> tuple[str, ...]:
    """peft target-module names for "all", "cross" (attn2) or "self" (attn1) attention."""
    if layers == "all":
        return LORA_TARGETS
    prefix = "attn2" if layers == "cross" else "attn1"
    return tuple(f"{prefix}.{t}" for t in LORA_TARGETS)


def lora_config(rank: int, alpha: int | None = None, targets: Sequence[str] = LORA_TARGETS) -> Any:
    """The peft ``LoraConfig`` of a run's LoRA (also saved as its file's adapter metadata)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=list(targets)
    )


def denoising_target(
    scheduler: Any, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """What the UNet is trained to predict: the noise, or for v-prediction schedulers the
    velocity of ``clean`` under ``noise`` at timesteps ``t``."""
    if scheduler.config.prediction_type == "epsilon":
        return noise
    return scheduler.get_velocity(clean, noise, t)


@dataclass
class Objective:
    """The frozen and trained pieces one loss evaluation needs."""

    conditioning: TextConditioning
    unet: Any
    scheduler: Any
    mapper: TokenMapper
    store: AttentionStore
    attn_weight: float = 0.01
    snr_gamma: float | None = 5.0
    resolution: int = 512  # the side training images are squashed to
    attn_part_weights: torch.Tensor | None = None  # (parts,) each part's share of it

    @property
    def num_parts(self) -> int:
        """How many parts have a token."""
        return len(self.conditioning.part_token_ids[0])

    def __call__(
        self,
        latents: torch.Tensor,
        captions: Sequence[str],
        codes: Sequence[Sequence[int]],
        masks: torch.Tensor,
        generator: torch.Generator | None = None,
        original_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts for a batch of latents, captions and part masks.

        ``original_sizes`` (h, w) of the images before squashing: SDXL's size conditioning
        (default: the training side).
        """
        batch = latents.shape[0]
        noise = torch.randn(
            latents.shape, generator=generator, device=latents.device, dtype=latents.dtype
        )
        steps = self.scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (batch,), generator=generator, device=latents.device)
        noisy = self.scheduler.add_noise(latents, noise, t)
        embeds = self.conditioning.encode(captions, codes, self.mapper)
        side = self.resolution
        sizes = original_sizes or [(side, side)] * batch
        inputs = self.conditioning.unet_inputs(embeds, sizes, side)
        self.store.reset()
        self.store.active = self.attn_weight > 0
        pred = self.unet(noisy, t, **inputs).sample
        target = denoising_target(self.scheduler, latents, noise, t)
        weights = None
        if self.snr_gamma:
            prediction = self.scheduler.config.prediction_type
            weights = min_snr_weights(self.scheduler.alphas_cumprod, t, self.snr_gamma, prediction)
        ldm = diffusion_loss(pred, target, weights)
        total, logs = ldm, {"loss_ldm": ldm.item()}
        if self.attn_weight > 0:
            attn = attention_loss(
                part_attention(self.store.maps(), embeds.found, self.num_parts),
                masks,
                part_weights=self.attn_part_weights,
            )
            total = total + self.attn_weight * attn
            logs["loss_attn"] = attn.item()
        logs["loss"] = total.item()
        return total, logs
