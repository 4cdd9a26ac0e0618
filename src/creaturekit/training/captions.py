"""Training captions from discovery codes: shuffled part tokens, templated or bare (50/50)."""

from __future__ import annotations

import random
from collections.abc import Mapping

from creaturekit.conditioning.tokens import part_token

#: Prompt templates around "<part tokens> <category>" (the reference used 27 such).
TEMPLATES = (
    "a photo of a {}",
    "a close-up photo of a {}",
    "a bright photo of a {}",
    "a dark photo of a {}",
    "a cropped photo of a {}",
    "a blurry photo of a {}",
    "a good photo of a {}",
    "a photo of one {}",
    "a photo of the small {}",
    "a photo of the large {}",
    "a rendition of a {}",
    "a picture of a {}",
    "an image of a {}",
    "a snapshot of a {}",
    "a low resolution photo of a {}",
    "a high quality photo of a {}",
)


def training_caption(
    codes: Mapping[int, int],
    rng: random.Random,
    category: str,
    template_probability: float = 0.5,
) -> tuple[str, list[int]]:
    """A caption for an image with ``codes`` ({part: code}) and the codes in token order.

    Part tokens are shuffled; with ``template_probability`` they are wrapped in a random
    template with the category word ("a photo of a <part_3> <part_0> bird"), otherwise the
    caption is the bare tokens.
    """
    parts = sorted(codes)
    rng.shuffle(parts)
    tokens = " ".join(part_token(p) for p in parts)
    if rng.random() < template_probability:
        text = rng.choice(TEMPLATES).format(f"{tokens} {category}".strip())
    else:
        text = tokens
    return text, [codes[p] for p in parts]
