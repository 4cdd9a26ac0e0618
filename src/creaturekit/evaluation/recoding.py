"""EMR and CoSim (docs/method.md section 4) from a re-coding of generated images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from creaturekit.evaluation.combinations import Combination
from creaturekit.evaluation.metrics import ImageScores, PartScores


@dataclass(frozen=True)
class Recoding:
    """EMR and CoSim of a group of generated images, overall, per part and per image."""

    emr: float
    cosim: float
    per_part: dict[str, PartScores]
    images: list[ImageScores]


def recoding_scores(
    requested: Sequence[Combination],
    codes: np.ndarray,
    part_features: np.ndarray,
    sub_centroids: Sequence[np.ndarray],
    names: dict[int, str],
) -> Recoding:
    """Per-part and overall EMR and CoSim, plus per-image rows.

    ``codes`` (N, P) and ``part_features`` (N, P, D) are the re-coding of the N generated
    images; image i was asked for ``requested[i]``. A part that is absent in the image
    counts as a mismatch with cosine similarity 0.
    """
    per_part: dict[int, dict[str, list[float]]] = {}
    rows = []
    for i, combo in enumerate(requested):
        recovered: dict[str, int] = {}
        cosim: dict[str, float] = {}
        for m, k in combo.items():
            got = int(codes[i, m])
            feature, centroid = part_features[i, m], sub_centroids[m][k]
            norm = float(np.linalg.norm(feature) * np.linalg.norm(centroid))
            cos = float(feature @ centroid) / norm if got >= 0 and norm > 0 else 0.0
            slot = per_part.setdefault(m, {"match": [], "cosim": []})
            slot["match"].append(float(got == k))
            slot["cosim"].append(cos)
            recovered[names[m]] = got
            cosim[names[m]] = round(cos, 4)
        emr = float(np.mean([recovered[names[m]] == k for m, k in combo.items()])) if combo else 0.0
        rows.append(
            ImageScores(
                requested={names[m]: k for m, k in combo.items()},
                recovered=recovered,
                cosim=cosim,
                emr=emr,
            )
        )
    matches = [v for s in per_part.values() for v in s["match"]]
    cosims = [v for s in per_part.values() for v in s["cosim"]]
    return Recoding(
        emr=float(np.mean(matches)) if matches else 0.0,
        cosim=float(np.mean(cosims)) if cosims else 0.0,
        per_part={
            names[m]: PartScores(
                emr=float(np.mean(s["match"])),
                cosim=float(np.mean(s["cosim"])),
                requests=len(s["match"]),
            )
            for m, s in sorted(per_part.items())
        },
        images=rows,
    )
