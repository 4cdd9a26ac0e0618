"""Image metrics of ``eval``: similarity to real images with the same codes, CLIP score, FID/KID.

* Image similarity: for every requested (part, code) of a generated image, the cosine
  between the image's global embedding and the mean (unit-normalised) embedding of the
  training images whose discovered code for that part is that code; averaged over all
  requests (and per part).
* CLIP score (x 100, clamped at 0, like torchmetrics' CLIPScore) between the image and
  the mix prompt WITHOUT its learned part tokens (``a photo of a bird``): part tokens
  mean nothing to CLIP, so the score says whether the image shows the category.
* FID and KID (torchmetrics) of the generated images against the training images, on
  the features of a chosen backbone (Inception by default). KID's subset size is the
  smaller set's size, capped at 1000; both need at least 2 images a side.

All backbones are loaded by :class:`ImageScorer`'s constructor, before any image is
generated, so missing weights stop ``eval`` at once.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from creaturekit.config import fill_template
from creaturekit.evaluation.backbones import Backbone, check_backbone, load_backbone
from creaturekit.evaluation.clip_score import ClipScorer, check_clip
from creaturekit.evaluation.combinations import Combination, code_rows
from creaturekit.evaluation.metrics import ImageFigures, ImageMetricsInfo
from creaturekit.project import Project

#: Per-group image figures repeated in ``overall`` (what ``eval --compare`` shows).
IMAGE_HEADLINES = ("similarity", "clip_score", "fid", "kid")
KID_SUBSET = 1000  # torchmetrics' default subset size, used when both sets are that large


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def code_means(embeddings: np.ndarray, codes: Sequence[Combination]) -> dict[tuple[int, int], Any]:
    """Mean unit embedding of the images having each (part, code)."""
    members: dict[tuple[int, int], list[int]] = {}
    for i, combo in enumerate(codes):
        for m, k in combo.items():
            members.setdefault((m, k), []).append(i)
    normed = unit(embeddings)
    return {key: normed[rows].mean(axis=0) for key, rows in members.items()}


def code_similarity(
    embeddings: np.ndarray,
    requested: Sequence[Combination],
    means: dict[tuple[int, int], np.ndarray],
    names: dict[int, str],
) -> dict[str, Any]:
    """Mean and per-part cosine of each image to the real images sharing a requested code."""
    normed = unit(embeddings)
    per_part: dict[str, list[float]] = {}
    for i, combo in enumerate(requested):
        for m, k in combo.items():
            if (m, k) in means:
                mean = unit(means[(m, k)])
                per_part.setdefault(names[m], []).append(float(normed[i] @ mean))
    every = [v for values in per_part.values() for v in values]
    return {
        "similarity": float(np.mean(every)) if every else float("nan"),
        "similarity_per_part": {p: float(np.mean(v)) for p, v in sorted(per_part.items())},
    }


def fid_kid(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> dict[str, float]:
    """FID, KID and KID's std (torchmetrics) between two feature sets ``(N, D)``."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        return {}
    identity = PassThrough(real.shape[1])
    fid = FrechetInceptionDistance(feature=identity)
    subset = min(KID_SUBSET, len(real), len(fake))
    with warnings.catch_warnings():  # "will save all extracted features": they are kept anyway
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=identity, subset_size=subset)
    for metric in (fid, kid):
        metric.update(torch.from_numpy(real).double(), real=True)
        metric.update(torch.from_numpy(fake).double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # KID draws its subsets from torch's RNG
        kid_mean, kid_std = kid.compute()
    return {
        "fid": float(fid.compute()),
        "kid": float(kid_mean),
        "kid_std": float(kid_std),
        "kid_subset": subset,
    }


class PassThrough(torch.nn.Module):
    """Precomputed features as torchmetrics' custom ``feature=`` module (they pass through)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def text_prompt(template: str, category: str) -> str:
    """The mix prompt without part tokens, e.g. ``a photo of a bird``; the category word
    alone when the template holds nothing else (``{parts}``)."""
    text = re.sub(r"\s+", " ", fill_template(template, "", category)).strip()
    return text or category


class ImageScorer:
    """The backbones of the image metrics (loaded now) and the training images' embeddings.

    ``image_model``, ``fid_model``: backbone references (see
    :mod:`creaturekit.evaluation.backbones`); ``clip_model``: a CLIP hub id or folder, or
    ``""`` to skip the CLIP score. The same reference is loaded (and run) once. Missing
    weights of any of them are refused before the first is loaded.
    """

    def __init__(self, project: Project, image_model: str, fid_model: str, clip_model: str):
        similarity = (image_model, "image-similarity backbone (eval.image_model)", "--image-model")
        fid = (fid_model, "FID/KID backbone (eval.fid_model)", "--fid-model")
        for ref, what, flag in (similarity, fid):
            check_backbone(ref, project, what, flag)
        if clip_model:
            check_clip(clip_model, project.root, "--clip-model")
        self.project = project
        self.skipped: dict[str, str] = {}
        self.similarity = load_backbone(image_model, project, *similarity[1:])
        self.fid: Backbone = self.similarity
        if fid_model != image_model:
            self.fid = load_backbone(fid_model, project, *fid[1:])
        self.clip: ClipScorer | None = None
        if clip_model:
            self.clip = ClipScorer(clip_model, project.root, "--clip-model")
        else:
            self.skipped["clip_score"] = (
                "no CLIP model set (eval.clip_model is empty); pass --clip-model ID_OR_PATH"
            )
        self.text = text_prompt(project.config.mix.template, project.config.project.category)
        self._fakes: list[np.ndarray] = []

    def prepare(self, result: Any) -> None:
        """Embed the training images of the discovery ``result`` once (both backbones)."""
        paths = [self.project.images_dir / row["file"] for row in result.codes]
        codes = code_rows(result)
        embedded = self.similarity.embed(paths, "Embedding training images")
        self.means = code_means(embedded, codes)
        self.real = (
            embedded
            if self.fid is self.similarity
            else self.fid.embed(paths, "Embedding training images (FID/KID)")
        )

    def group(
        self,
        requested: Sequence[Combination],
        images: Sequence[Image.Image],
        names: dict[int, str],
        seed: int,
    ) -> ImageFigures:
        """Similarity, CLIP score and FID/KID of one group of generated images."""
        if not images:
            return ImageFigures()
        embedded = self.similarity.embed(images, "Embedding generated images")
        fake = (
            embedded
            if self.fid is self.similarity
            else self.fid.embed(images, "Embedding generated images (FID/KID)")
        )
        self._fakes.append(fake)
        similarity = code_similarity(embedded, requested, self.means, names)
        clip = (
            float(self.clip.score(images, [self.text] * len(images)).mean())
            if self.clip is not None
            else None
        )
        distances = fid_kid(self.real, fake, seed)
        subset = distances.get("kid_subset")
        return ImageFigures(
            similarity=None if np.isnan(similarity["similarity"]) else similarity["similarity"],
            similarity_per_part=similarity["similarity_per_part"],
            clip_score=clip,
            fid=distances.get("fid"),
            kid=distances.get("kid"),
            kid_std=distances.get("kid_std"),
            kid_subset=None if subset is None else int(subset),
        )

    def overall(self, seed: int) -> dict[str, float]:
        """FID/KID of every generated image scored so far against the training images."""
        fakes = [f for f in self._fakes if len(f)]
        return fid_kid(self.real, np.concatenate(fakes), seed) if fakes else {}

    def describe(self) -> ImageMetricsInfo:
        """What the figures were computed with (recorded in metrics.json)."""
        return ImageMetricsInfo(
            image_model=self.similarity.name,
            fid_model=self.fid.name,
            clip_model=self.clip.name if self.clip is not None else None,
            clip_text=self.text,
            reference_images=len(self.real),
            skipped=self.skipped,
        )
