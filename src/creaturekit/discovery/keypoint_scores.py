"""Discovery quality where ground truth exists: the keypoint NMI/ARI protocol (CUB).

Protocol of the unsupervised part-discovery literature: sample the predicted part map
at every visible keypoint, pool over images, and compare part labels with keypoint
names by sklearn's NMI and ARI (x 100).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np


def keypoint_part_labels(
    result: Any,
    records: Mapping[int, Any],
    keypoints: Mapping[int, Mapping[str, tuple[float, float]]],
) -> Iterator[tuple[int, str]]:
    """(predicted part label, keypoint name) for every keypoint of every coded image.

    Keypoints are in the original image's pixels; masks cover the whole image (squashed),
    so a point maps to patch ``(y * h / height, x * w / width)``.
    """
    h, w = result.grid
    for row, mask in zip(result.codes, result.masks, strict=True):
        points = keypoints.get(row["id"])
        record = records.get(row["id"])
        if not points or record is None:
            continue
        for name, (x, y) in points.items():
            r = min(h - 1, max(0, int(y * h / record.height)))
            c = min(w - 1, max(0, int(x * w / record.width)))
            yield int(mask[r, c]), name


def keypoint_nmi_ari(
    result: Any,
    records: Mapping[int, Any],
    keypoints: Mapping[int, Mapping[str, tuple[float, float]]],
) -> dict[str, float]:
    """NMI and ARI (x 100) between predicted parts and keypoint names, pooled over images."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pairs = list(keypoint_part_labels(result, records, keypoints))
    if not pairs:
        return {"nmi": float("nan"), "ari": float("nan"), "keypoints": 0}
    pred = np.array([p for p, _ in pairs])
    names = sorted({n for _, n in pairs})
    truth = np.array([names.index(n) for _, n in pairs])
    return {
        "nmi": 100.0 * float(normalized_mutual_info_score(truth, pred)),
        "ari": 100.0 * float(adjusted_rand_score(truth, pred)),
        "keypoints": len(pairs),
    }
