"""Are a part's codes distinct yet? Two signals, and the one-line warning of fit and eval.

A part token draws the sub-concept it is asked for only once its codes mean different
things. Early in a fit they do not: asking for head 3 or head 12 draws the same head.

* **What the codes draw** (:func:`creaturekit.training.recognition.code_recognition`):
  how often the model prefers a training image's own code to another code of the part
  when denoising it. Along the toy fits' checkpoints, every part drawn right on novel
  combinations 60% of the time or more won at least 83% of these comparisons, and 24 of
  the 30 parts drawn right 35% of the time or less won under 80% (docs/results.md, "A
  safeguard that watches what the codes draw"): below :data:`DISTINCT` a part is
  flagged.
* **The token vectors** (:func:`code_similarity`): each part's median pairwise cosine
  between its code vectors. At :data:`ALIKE` or above the vectors are nearly the same
  (codes started at ``code_init_std`` 0.02 sit there for most of a fit); codes started
  apart (1.0, the presets' value) are below it from the first step, so a low cosine does
  not show that a fit was long enough.

``fit`` records both per part in its last log row, ``eval`` in ``metrics.json``; a part
flagged by either is named in one warning line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from creaturekit.conditioning.mapper import TokenMapper
from creaturekit.progress import warn

ALIKE = 0.9
"""Median pairwise cosine similarity from which a part's code vectors are alike."""

DISTINCT = 0.8
"""Share of won own-code comparisons below which a part's codes draw alike."""


@torch.no_grad()
def code_similarity(mapper: TokenMapper, names: list[str]) -> dict[str, float | None]:
    """Per part (by name), the median cosine similarity between the vectors of its codes
    (``None`` for a part with fewer than two codes)."""
    device = mapper.code_embedding.weight.device
    medians: dict[str, float | None] = {}
    for part, (name, k) in enumerate(zip(names, mapper.config.num_codes, strict=True)):
        if k < 2:
            medians[name] = None
            continue
        codes = torch.arange(k, device=device)
        vectors = mapper(torch.full_like(codes, part), codes).float()
        unit = torch.nn.functional.normalize(vectors, dim=-1)
        pairs = torch.triu_indices(k, k, offset=1, device=device)
        medians[name] = round(float((unit[pairs[0]] * unit[pairs[1]]).sum(-1).median()), 4)
    return medians


def not_distinct(
    similarity: dict[str, float | None], recognition: dict[str, float | None] | None = None
) -> dict[str, str]:
    """The parts whose codes are not yet distinct, each with the figure that says so."""
    flagged: dict[str, str] = {}
    for name, share in (recognition or {}).items():
        if share is not None and share < DISTINCT:
            flagged[name] = f"own code preferred {share:.0%}"
    for name, cosine in similarity.items():
        if cosine is not None and cosine >= ALIKE:
            reason = f"vectors' cosine {cosine:.3f}"
            flagged[name] = f"{flagged[name]}, {reason}" if name in flagged else reason
    return flagged


def distinctness_warning(flagged: dict[str, str], step: int | None) -> str:
    """One line naming the parts whose codes still draw alike, and what to do."""
    parts = ", ".join(f"{name} ({why})" for name, why in flagged.items())
    when = f"after {step} steps" if step is not None else "yet"
    return (
        f"The codes of {parts} are not distinct {when}: each of their codes draws about "
        f"the same (distinct parts: own code preferred in {DISTINCT:.0%} or more of the "
        f"probe's comparisons, chance 50%; token vectors' cosine under {ALIKE}); fit longer "
        "(`--resume --steps N`)."
    )


def distinctness(
    mapper: TokenMapper,
    names: list[str],
    step: int | None,
    recognise: Callable[[], list[float | None]] | None = None,
) -> dict[str, Any]:
    """Per part (by name), its code vectors' median cosine (``code_similarity``) and, with
    ``recognise`` (the probe, run here), the share the probe won (``code_recognition``);
    where a part is flagged, the one warning line (``warning``, also shown)."""
    similarity = code_similarity(mapper, names)
    recognition = None if recognise is None else dict(zip(names, recognise(), strict=True))
    figures: dict[str, Any] = {"code_similarity": similarity, "code_recognition": recognition}
    if flagged := not_distinct(similarity, recognition):
        figures["warning"] = distinctness_warning(flagged, step)
        warn(figures["warning"])
    return figures
