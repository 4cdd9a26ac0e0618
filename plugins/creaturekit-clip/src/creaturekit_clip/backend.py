"""The clip-kmeans discoverer."""

from __future__ import annotations

import math
from typing import Any

from creaturekit.discovery.base import Discoverer
from creaturekit.errors import ModelNotFoundError

RANDOM = "random"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipKMeans(Discoverer):
    """open_clip ViT patch tokens (after the final layer norm), k-means at every level."""

    name = "clip-kmeans"
    default_model = "ViT-B-16"
    pixel_mean = OPENAI_MEAN
    pixel_std = OPENAI_STD

    def __init__(self, model: str = "", *, pretrained: str = "openai", **options: Any) -> None:
        super().__init__(model, **options)
        self.pretrained = pretrained

    def feature_key(self) -> dict[str, Any]:
        key = super().feature_key()
        key.update(pretrained=self.pretrained, tokens="ln_post")
        return key

    def _load(self) -> None:
        import open_clip
        import torch

        try:
            with torch.random.fork_rng():
                torch.manual_seed(self.seed)  # "random" weights are reproducible
                net = open_clip.create_model(
                    self.model,
                    pretrained=None if self.pretrained == RANDOM else self.pretrained,
                    force_image_size=self.image_size,
                    device=self._device,
                )
        except Exception as err:  # open_clip raises many types for missing weights
            raise ModelNotFoundError(
                f"Could not load the open_clip model {self.model!r} with weights "
                f"{self.pretrained!r} ({type(err).__name__}); pass a local checkpoint with "
                "--option pretrained=PATH (downloads need a network connection)."
            ) from err
        self._visual = net.visual.eval()
        self._visual.output_tokens = True

    def _embed(self, pixels: Any) -> Any:
        _, tokens = self._visual(pixels)
        side = math.isqrt(tokens.shape[1])
        return tokens[:, -side * side :].reshape(len(tokens), side, side, -1)
