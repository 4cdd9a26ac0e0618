"""The two losses of stage 2: Min-SNR-weighted diffusion loss and the attention loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def min_snr_weights(
    alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float, prediction: str
) -> torch.Tensor:
    """Per-sample Min-SNR-gamma loss weights (Hang et al. 2023) for eps or v prediction."""
    ac = alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = ac / (1.0 - ac)
    clipped = torch.clamp(snr, max=gamma)
    if prediction == "epsilon":
        return clipped / snr
    if prediction == "v_prediction":
        return clipped / (snr + 1.0)
    raise ValueError(f"Unsupported prediction type {prediction!r}.")


def diffusion_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error per sample, optionally weighted, averaged over the batch.

    ``pixel_weights`` (broadcastable to ``pred``, one map per sample) weigh the elements
    within each sample; they are normalised to mean 1 per sample.
    """
    error = F.mse_loss(pred.float(), target.float(), reduction="none")
    dims = tuple(range(1, pred.ndim))
    if pixel_weights is not None:
        pixel_weights = pixel_weights.float().expand_as(error)
        error = error * pixel_weights / pixel_weights.mean(dim=dims, keepdim=True)
    per_sample = error.mean(dim=dims)
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()


def part_attention(
    maps: torch.Tensor, occurrences: list[list[tuple[int, int]]], num_parts: int
) -> torch.Tensor:
    """Columns of the part tokens: (B, num_parts, H*W); parts without a token stay zero.

    ``maps`` is (B, H*W, tokens); ``occurrences[b]`` lists (position, part) pairs. A part
    named twice in one prompt sums its columns.
    """
    batch, pixels, _ = maps.shape
    out = maps.new_zeros(batch, num_parts, pixels)
    for b, pairs in enumerate(occurrences):
        for pos, part in pairs:
            out[b, part] = out[b, part] + maps[b, :, pos]
    return out


def attention_loss(
    part_maps: torch.Tensor,
    masks: torch.Tensor,
    eps: float = 1e-6,
    part_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """BCE between per-pixel normalised part attention and one-hot part masks.

    ``part_maps``: (B, P, H*W) from :func:`part_attention`. ``masks``: (B, H', W') integer
    part labels (0..P-1; -1 or P+ for "no part"), resized here to the map size with
    nearest neighbours. Parts absent from an image have target 0 and attention 0, so
    they add nothing and receive no gradient. ``part_weights`` (P,) scales each part's
    terms (default: all 1).
    """
    batch, parts, pixels = part_maps.shape
    side = math.isqrt(pixels)
    labels = F.interpolate(masks[:, None].float(), size=(side, side), mode="nearest")
    labels = labels.view(batch, pixels).long()
    target = torch.zeros_like(part_maps)
    valid = (labels >= 0) & (labels < parts)
    target.scatter_(1, labels.clamp(0, parts - 1)[:, None], valid[:, None].to(target.dtype))
    normalised = part_maps / part_maps.sum(1, keepdim=True).clamp(min=eps)
    normalised = (normalised.clamp(eps, 1 - eps) * (part_maps > 0)).float()
    weight = None
    if part_weights is not None:
        weight = part_weights.to(normalised).view(1, parts, 1).expand_as(normalised)
    # BCE refuses NaN input with an error; a diverged model must give a NaN loss instead,
    # which the trainer's NaN stop handles.
    loss = F.binary_cross_entropy(
        torch.nan_to_num(normalised, nan=eps), target.float(), weight=weight
    )
    return torch.where(normalised.isnan().any(), torch.full_like(loss, math.nan), loss)
