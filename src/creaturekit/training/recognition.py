"""Do a part's codes draw different things yet? Each probe image's own code, recognised.

A code is only worth its token if the denoiser draws something different for it. The
probe asks the fitted model, for some training images and each part, whether the
image's own code explains the image better than other codes of that part: the image's
latents are noised (the same noise and a few fixed timesteps for every candidate) and
denoised with its own code and with ``RIVALS`` other codes, everything else in the
prompt the same; the code whose prediction errs less inside the part's mask wins (a
diffusion classifier, as in Li et al. 2023, "Your Diffusion Model is Secretly a
Zero-Shot Classifier"). Codes that all draw alike win about half of the comparisons,
however far apart their token vectors are; the share climbs towards 1 as a part's codes
come to mean something. :mod:`creaturekit.training.distinctness` turns the shares into
fit's and eval's warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from creaturekit.conditioning.tokens import part_token
from creaturekit.training.objective import denoising_target

RIVALS = 7
"""Other codes of the part each probe's own code is compared with."""

NOISE_LEVELS = (0.3, 0.5, 0.7)
"""Timesteps of the probe, as fractions of the training schedule."""


@dataclass(frozen=True)
class Probe:
    """One training image as the probe reads it."""

    latents: torch.Tensor  # (C, h, w), unflipped
    codes: dict[int, int]  # part index -> its code in this image
    mask: torch.Tensor  # (H, W) part labels at the discovery grid


@torch.no_grad()
def load_probes(
    examples: Sequence[Any], vae: Any, resolution: int, n: int, seed: int = 0
) -> list[Probe]:
    """A seeded sample of ``n`` training examples (:class:`~creaturekit.training.data.
    FitExample`) encoded by ``vae`` at ``resolution``."""
    from creaturekit.training.data import encode_latents, load_pixels

    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))
    picked = [examples[int(i)] for i in order[:n]]
    pixels = torch.stack([load_pixels(ex.path, resolution) for ex in picked])
    latents = encode_latents(vae, pixels)
    return [
        Probe(lat, dict(ex.codes), torch.from_numpy(ex.mask.astype("int64")))
        for lat, ex in zip(latents, picked, strict=True)
    ]


@torch.no_grad()
def code_recognition(
    conditioning: Any,
    unet: Any,
    scheduler: Any,
    mapper: Any,
    probes: Sequence[Probe],
    num_codes: Sequence[int],
    category: str,
    *,
    resolution: int,
    seed: int = 0,
    batch_size: int = 16,
) -> list[float | None]:
    """Per part index, how often the model prefers a probe's own code to another code of
    the part (the share of won comparisons, ``RIVALS`` per probe; ``None`` where a part has
    fewer than two codes or no probe shows it)."""
    gen = torch.Generator().manual_seed(seed)
    total = scheduler.config.num_train_timesteps
    latents = torch.stack([p.latents for p in probes]).float()
    denoiser = _Denoiser(
        conditioning,
        unet,
        scheduler,
        mapper,
        probes,
        category,
        resolution,
        batch_size,
        latents,
        noise=torch.randn((len(NOISE_LEVELS), *latents.shape), generator=gen),
        steps=[min(total - 1, round(f * total)) for f in NOISE_LEVELS],
    )
    shares: list[float | None] = []
    for part, k in enumerate(num_codes):
        shown = [i for i, p in enumerate(probes) if part in p.codes and (p.mask == part).any()]
        if k < 2 or not shown:
            shares.append(None)
            continue
        rows: list[tuple[int, list[int]]] = []  # (probe, codes of its prompt) per candidate
        sizes = []
        for i in shown:
            own = probes[i].codes[part]
            rivals = [c for c in torch.randperm(k, generator=gen).tolist() if c != own]
            candidates = [own, *rivals[:RIVALS]]
            sizes.append(len(candidates))
            rows += [(i, _prompt_codes({**probes[i].codes, part: c})) for c in candidates]
        errors = denoiser.errors(rows, part)
        won = [bool(e[0] < r) for e in errors.split(sizes) for r in e[1:]]
        shares.append(round(sum(won) / len(won), 4))
    return shares


def _prompt_codes(codes: dict[int, int]) -> list[int]:
    return [codes[p] for p in sorted(codes)]


@dataclass
class _Denoiser:
    """The fitted model and the probes' fixed noise: prediction errors of prompts."""

    conditioning: Any
    unet: Any
    scheduler: Any
    mapper: Any
    probes: Sequence[Probe]
    category: str
    resolution: int
    batch_size: int
    latents: torch.Tensor  # (probes, C, h, w)
    noise: torch.Tensor  # (levels, probes, C, h, w)
    steps: list[int]  # one timestep per noise level

    def errors(self, rows: list[tuple[int, list[int]]], part: int) -> torch.Tensor:
        """Each (probe, codes) row's prediction error inside ``part``'s mask, summed over
        the noise levels."""
        device = next(self.unet.parameters()).device
        out = torch.zeros(len(rows))
        side = self.latents.shape[-1]
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            index = [i for i, _ in chunk]
            tokens = [" ".join(part_token(p) for p in sorted(self.probes[i].codes)) for i in index]
            prompts = [f"a photo of a {t} {self.category}" for t in tokens]
            embeds = self.conditioning.encode(prompts, [codes for _, codes in chunk], self.mapper)
            side_px = self.resolution
            inputs = self.conditioning.unet_inputs(
                embeds, [(side_px, side_px)] * len(chunk), side_px
            )
            masks = torch.stack([(self.probes[i].mask == part).float() for i in index])[:, None]
            weight = F.interpolate(masks, size=(side, side), mode="area").to(device)
            clean = self.latents[index].to(device)
            for level, t in enumerate(self.steps):
                err = self._squared_error(clean, self.noise[level][index].to(device), t, inputs)
                out[start : start + len(chunk)] += (
                    (err * weight).sum((1, 2, 3)) / weight.sum((1, 2, 3)).clamp(min=1e-6)
                ).cpu()
        return out

    def _squared_error(
        self, clean: torch.Tensor, eps: torch.Tensor, t: int, inputs: dict[str, Any]
    ) -> torch.Tensor:
        """Per pixel, the squared error of the UNet's prediction at timestep ``t`` (B, 1, h, w)."""
        timestep = torch.full((len(clean),), t, device=clean.device, dtype=torch.long)
        noisy = self.scheduler.add_noise(clean, eps, timestep)
        pred = self.unet(noisy, timestep, **inputs).sample.float()
        target = denoising_target(self.scheduler, clean, eps, timestep)
        return ((pred - target.float()) ** 2).mean(1, keepdim=True)
