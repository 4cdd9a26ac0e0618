"""``clip-kmeans``: dense patch tokens of an open_clip vision tower, k-means at every level.

``--model`` is an open_clip architecture (``ViT-B-16``), ``--option pretrained=...`` a tag
(``openai``, ``laion2b_s34b_b88k``: downloaded and cached by open_clip) or a local
checkpoint file (loaded with ``weights_only=True``); ``random`` gives untrained weights
seeded by ``seed`` (for tests).
"""

from __future__ import annotations

from creaturekit_clip.backend import ClipKMeans

__all__ = ["ClipKMeans"]
