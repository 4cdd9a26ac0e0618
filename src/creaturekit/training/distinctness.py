"""Are a part's codes distinct yet? Its code vectors from the token mapper, compared.

A part token's meaning comes from the mapper's vector for the requested code. Early in a
fit the vectors of one part's codes are nearly the same, so every code of that part
draws the same thing: asking for head 3 or head 12 makes no difference. ``fit`` records
each part's median pairwise cosine in its last log row and warns about parts at or above
:data:`ALIKE`; ``eval`` records it with the metrics. Along the toy demo's fit, parts at
0.9 or above were drawn right about as often as chance, parts at 0.85 or below 4 to 9
times out of 10 (docs/results.md, "When are a part's codes distinct"). That holds for
codes that start alike (``code_init_std`` 0.02); codes started apart (1.0, the presets'
value) are below :data:`ALIKE` from the first step, so there a low cosine does not show
that a fit was long enough (docs/results.md, "Codes distinct from the start").
"""

from __future__ import annotations

import torch

from creaturekit.conditioning.mapper import TokenMapper

ALIKE = 0.9
"""Median pairwise cosine similarity from which a part's codes are taken to draw alike."""


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


def alike(similarity: dict[str, float | None]) -> dict[str, float]:
    """The parts whose codes are not yet distinct (median cosine >= :data:`ALIKE`)."""
    return {name: v for name, v in similarity.items() if v is not None and v >= ALIKE}


def alike_warning(parts_alike: dict[str, float], step: int | None) -> str:
    """One line telling which parts' codes still draw alike, and what to do."""
    parts = ", ".join(f"{name} ({value:.3f})" for name, value in parts_alike.items())
    when = f"After {step} steps the" if step is not None else "The"
    return (
        f"{when} codes of {parts} are not yet distinct (median cosine of "
        f"their token vectors >= {ALIKE}): each of their codes draws about the same; fit "
        "longer (`--resume --steps N`)."
    )
