"""Training data of a fit run: images with their discovery codes and part masks.

Images are squashed to a square (as discovery saw them), so the patch-resolution part
masks stay aligned; a random horizontal flip flips image and masks together. With
latent caching every image is encoded once by the VAE and the cache is kept in the
project (``runs/.cache``), keyed by model, resolution and image set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from creaturekit import fsutil
from creaturekit.discovery.features import load_rgb, unreadable_image
from creaturekit.errors import DamagedFileError
from creaturekit.progress import track


@dataclass
class FitExample:
    """One training image: its file, codes ({part: code}) and part-label mask."""

    path: Path
    codes: dict[int, int]
    mask: np.ndarray  # (h, w) uint8 part labels at patch resolution


def examples_from_discovery(images_dir: Path, result: Any) -> list[FitExample]:
    """Every image of a discovery result with its codes and mask (a missing file is named)."""
    examples = [
        FitExample(
            path=images_dir / row["file"],
            codes={int(m): int(k) for m, k in row["codes"].items()},
            mask=np.asarray(result.masks[i]),
        )
        for i, row in enumerate(result.codes)
    ]
    for ex in examples:
        if not ex.path.is_file():
            raise unreadable_image(ex.path, FileNotFoundError())
    return examples


def load_pixels(path: Path, resolution: int) -> torch.Tensor:
    """An image as a (3, r, r) tensor in [-1, 1], squashed to the square."""
    rgb = load_rgb(path).resize((resolution, resolution), Image.Resampling.BICUBIC)
    arr = torch.from_numpy(np.asarray(rgb, dtype=np.float32).copy())
    return arr.permute(2, 0, 1) / 127.5 - 1.0


@torch.no_grad()
def encode_latents(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    """VAE latents (mean of the posterior, scaled) of a batch of pixels."""
    dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
    return (dist.mean * vae.config.scaling_factor).float().cpu()


def latent_cache_key(model_location: str, resolution: int, examples: list[FitExample]) -> str:
    """Cache key: the model, resolution and the exact image files."""
    h = hashlib.sha256(f"{model_location}|{resolution}".encode())
    for ex in examples:
        h.update(f"{ex.path.name}:{ex.path.stat().st_size}:{ex.path.stat().st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached_latents(
    vae: Any,
    examples: list[FitExample],
    resolution: int,
    cache_dir: Path,
    key: str,
    batch_size: int = 8,
) -> torch.Tensor:
    """Latents of every example, from the cache or encoded once and cached (safetensors);
    a damaged cache file is encoded again."""
    path = cache_dir / f"latents-{key}.safetensors"
    if path.is_file():
        try:
            cached = fsutil.load_safetensors(path).get("latents")
        except DamagedFileError:
            cached = None
        if isinstance(cached, torch.Tensor) and cached.ndim == 4 and len(cached) == len(examples):
            return cached
    chunks = []
    starts = range(0, len(examples), batch_size)
    for start in track(starts, "Encoding latents", total=len(starts)):
        batch = examples[start : start + batch_size]
        chunks.append(
            encode_latents(vae, torch.stack([load_pixels(e.path, resolution) for e in batch]))
        )
    latents = torch.cat(chunks).contiguous()
    fsutil.save_safetensors({"latents": latents}, path)
    return latents


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The (reproducible) order of the examples in ``epoch``."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=gen).tolist()


def next_indices(
    n: int, seed: int, cursor: tuple[int, int], count: int
) -> tuple[list[int], tuple[int, int]]:
    """The next ``count`` example indices from ``cursor`` = (epoch, position), and the new cursor.

    Batches run on across epoch boundaries, so every batch (and every process's share of
    it) is full.
    """
    epoch, pos = cursor
    out: list[int] = []
    while len(out) < count:
        order = epoch_order(n, seed, epoch)
        take = order[pos : pos + count - len(out)]
        out.extend(take)
        pos += len(take)
        if pos >= n:
            epoch, pos = epoch + 1, 0
    return out, (epoch, pos)
