"""``dino-kmeans``: last-layer patch tokens of a Hugging Face ViT (DINOv2, DINO) + k-means.

Any ``AutoModel`` whose output holds patch tokens at the end of ``last_hidden_state``
works: DINOv2 (with or without registers), DINO v1 ViTs, plain ViTs. Hub ids and local
folders take the same path, with a one-sentence error when the weights are missing.
"""

from __future__ import annotations

import inspect
from typing import Any

from creaturekit.discovery.base import Discoverer

DEFAULT_MODEL = "facebook/dinov2-base"


class DinoKMeans(Discoverer):
    """DINO / DINOv2 patch features, k-means at every level (the reference method)."""

    name = "dino-kmeans"
    default_model = DEFAULT_MODEL

    def feature_key(self) -> dict[str, Any]:
        from creaturekit.models import resolve_model

        key = super().feature_key()
        key.update(model=resolve_model(self.model).location, layer="last", resize="squash")
        return key

    def _load(self) -> None:
        from transformers import AutoModel

        from creaturekit.models import load_pretrained

        self._net = load_pretrained(AutoModel.from_pretrained, self.model, "feature backbone")
        self._net.eval().to(self._device)
        self._patch = int(getattr(self._net.config, "patch_size", 14))
        params = inspect.signature(self._net.forward).parameters
        self._kwargs = (
            {"interpolate_pos_encoding": True} if "interpolate_pos_encoding" in params else {}
        )

    def _embed(self, pixels: Any) -> Any:
        size = (self.image_size // self._patch) * self._patch
        if size != pixels.shape[-1]:
            pixels = pixels[..., :size, :size]
        tokens = self._net(pixel_values=pixels, **self._kwargs).last_hidden_state
        side = size // self._patch
        return tokens[:, -side * side :].reshape(len(tokens), side, side, -1)
