"""Discovery figures for the toy world: part NMI / ARI and sub-concept purity.

The array helpers work on any labels; :func:`discovery_scores` applies them to a toy
project's ground truth and a discovery result given as arrays (so the discovery code
reads its own files and calls this).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from creaturekit.constants import BACKGROUND_PART
from creaturekit.toy.dataset import ToyGroundTruth
from creaturekit.toy.world import PARTS


def part_scores(pred: ArrayLike, truth: ArrayLike) -> dict[str, float]:
    """NMI and ARI (x 100) between predicted and true labels of the same elements."""
    p, t = np.ravel(pred), np.ravel(truth)
    if p.shape != t.shape:
        raise ValueError(f"{p.size} predicted labels for {t.size} true ones.")
    return {
        "nmi": 100.0 * float(normalized_mutual_info_score(t, p)),
        "ari": 100.0 * float(adjusted_rand_score(t, p)),
    }


def majority(pred: ArrayLike, truth: ArrayLike) -> dict[int, int]:
    """For each predicted label, the true label it most often covers."""
    p, t = np.ravel(pred), np.ravel(truth)
    values, index = np.unique(t, return_inverse=True)
    return {
        int(label): int(values[np.bincount(index[p == label], minlength=len(values)).argmax()])
        for label in np.unique(p)
    }


def subconcept_purity(codes: ArrayLike, truth: ArrayLike) -> float:
    """Share of elements whose code's majority true label is their own (1.0 = pure)."""
    c, t = np.ravel(codes), np.ravel(truth)
    if c.size == 0:
        return float("nan")
    mapping = majority(c, t)
    return float(np.mean(np.asarray([mapping[int(k)] for k in c]) == t))


def pool_labels(mask: np.ndarray, grid: int) -> np.ndarray:
    """The majority label of each cell of a ``grid`` x ``grid`` split of a 2-D label map."""
    h, w = mask.shape
    rows = (np.arange(h) * grid // h)[:, None]
    cols = (np.arange(w) * grid // w)[None, :]
    cell = (rows * grid + cols).ravel()
    n_labels = int(mask.max()) + 1
    counts = np.bincount(
        cell * n_labels + mask.ravel().astype(np.int64), minlength=grid * grid * n_labels
    )
    return counts.reshape(grid, grid, n_labels).argmax(axis=2).astype(mask.dtype)


def discovery_scores(
    truth: ToyGroundTruth,
    masks: Mapping[int, np.ndarray],
    codes: Mapping[int, Mapping[int, int]],
) -> dict[str, Any]:
    """Score a discovery result on a toy project.

    ``masks`` holds each image's predicted part labels (square, any resolution: the
    true masks are pooled to it); ``codes`` each image's {discovered part: sub-concept}.
    Every discovered part is matched to the true part (or ``bg``) it most overlaps;
    its sub-concepts are scored against that part's true variants (the scene for bg).
    """
    ids = sorted(masks)
    pred = np.concatenate([np.ravel(masks[i]) for i in ids])
    true = np.concatenate([np.ravel(pool_labels(truth.mask(i), masks[i].shape[0])) for i in ids])
    names = (BACKGROUND_PART, *PARTS)
    matched = majority(pred, true)
    foreground = true > 0
    parts = []
    for index, label in sorted(matched.items()):
        with_code = [i for i in ids if index in codes.get(i, {})]
        if label == 0:
            target = np.asarray([truth.rows[i]["scene"] for i in with_code])
        else:
            target = truth.variants(names[label], with_code)
        keep = target >= 0
        found = np.asarray([codes[i][index] for i in with_code])[keep]
        parts.append(
            {
                "index": index,
                "ground_truth": names[label],
                "images": int(keep.sum()),
                "purity": subconcept_purity(found, target[keep]),
                "majority": majority(found, target[keep]) if keep.any() else {},
            }
        )
    return {
        "images": len(ids),
        **part_scores(pred, true),
        **{f"fg_{k}": v for k, v in part_scores(pred[foreground], true[foreground]).items()},
        "parts": parts,
    }
