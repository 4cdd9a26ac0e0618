"""CLIP text score: how well a generated image matches a text, as torchmetrics' CLIPScore.

``100 * max(0, cos(image embedding, text embedding))`` with a ``transformers`` ``CLIPModel``
(projected features) and its processor, both loaded from a hub id or local folder
through :func:`creaturekit.models.load_pretrained`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from creaturekit.evaluation.backbones import BATCH, pooled
from creaturekit.models import (
    ModelRef,
    check_weights_available,
    load_pretrained,
    resolve_model,
    select_device,
)
from creaturekit.progress import track

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
WHAT = "CLIP model (eval.clip_model)"


def check_clip(ref: str, base: Path | None = None, flag: str = "--model") -> ModelRef:
    """The CLIP model ``ref`` resolved; refused at once when it cannot be loaded offline."""
    model = resolve_model(ref, base, flag)
    check_weights_available(model, WHAT, flag)
    return model


class ClipScorer:
    """A CLIP model loaded once; :meth:`score` gives one figure per (image, text) pair."""

    def __init__(self, ref: str = DEFAULT_CLIP, base: Path | None = None, flag: str = "--model"):
        model = check_clip(ref, base, flag)
        from transformers import AutoProcessor, CLIPModel

        self.name = model.location
        self.net = load_pretrained(CLIPModel.from_pretrained, model, WHAT, flag).eval()
        self.processor = load_pretrained(AutoProcessor.from_pretrained, model, WHAT, flag)
        self.device = select_device()
        self.net.to(self.device)

    def score(self, images: Sequence[Image.Image], texts: Sequence[str]) -> np.ndarray:
        """CLIP score (0-100) of each image with its text."""
        import torch

        starts = range(0, len(images), BATCH)
        out = []
        for s in track(starts, "CLIP text score", total=len(starts)):
            inputs = self.processor(
                text=list(texts[s : s + BATCH]),
                images=list(images[s : s + BATCH]),
                return_tensors="pt",
                padding=True,
                truncation=True,
            ).to(self.device)
            with torch.inference_mode():
                image = pooled(self.net.get_image_features(pixel_values=inputs["pixel_values"]))
                text = pooled(
                    self.net.get_text_features(
                        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                    )
                )
            cos = torch.nn.functional.cosine_similarity(image.float(), text.float(), dim=-1)
            out.append((100 * cos.clamp(min=0)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)
