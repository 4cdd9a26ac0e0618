"""Which code combinations an evaluation asks for: seen in training images, or novel.

A combination maps part index -> sub-concept code. "Seen" combinations are the full
codes of training images. "Novel" ones take every part's code from a different random
training image, and are kept only when no training image has that combination, so
they mix parts across species.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

Combination = dict[int, int]


def _key(combo: Combination) -> tuple[tuple[int, int], ...]:
    return tuple(sorted(combo.items()))


def seen_combinations(rows: Sequence[Combination], n: int, rng: random.Random) -> list[Combination]:
    """Up to ``n`` distinct combinations of training images."""
    unique = list({_key(r): r for r in rows if r}.values())
    rng.shuffle(unique)
    return [dict(c) for c in unique[:n]]


def novel_combinations(
    rows: Sequence[Combination], n: int, rng: random.Random, attempts: int = 50
) -> list[Combination]:
    """Up to ``n`` distinct combinations no training image has, parts from different images."""
    usable = [r for r in rows if r]
    seen = {_key(r) for r in usable}
    out: dict[tuple[tuple[int, int], ...], Combination] = {}
    for _ in range(n * attempts):
        if len(out) == n or len(usable) < 2:
            break
        parts = sorted(rng.choice(usable))
        combo: Combination = {}
        for part in parts:
            with_part = [r for r in usable if part in r]
            combo[part] = rng.choice(with_part)[part]
        key = _key(combo)
        if key not in seen and key not in out:
            out[key] = combo
    return list(out.values())


def evaluation_draw(rows: Sequence[Combination], n: int, seed: int) -> dict[str, list[Combination]]:
    """The ``n`` seen and ``n`` novel combinations an evaluation with ``seed`` asks for."""
    rng = random.Random(seed)
    return {"seen": seen_combinations(rows, n, rng), "novel": novel_combinations(rows, n, rng)}


def code_rows(result: Any) -> list[Combination]:
    """Each training image's combination (part index -> code) in a discovery result."""
    return [{int(m): int(k) for m, k in r["codes"].items()} for r in result.codes]
