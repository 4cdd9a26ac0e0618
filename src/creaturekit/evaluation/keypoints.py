"""Discovery NMI/ARI at CUB or toy keypoints, by the protocol of docs/method.md section 4."""

from __future__ import annotations

import math
from typing import Any

from creaturekit.discovery.keypoint_scores import keypoint_nmi_ari
from creaturekit.evaluation.metrics import KeypointScores
from creaturekit.project import Project


def keypoint_scores(project: Project, result: Any) -> KeypointScores | None:
    """NMI and ARI (x 100) of the discovered parts at the annotated keypoints (None without)."""
    keypoints = project.keypoints()
    if not keypoints:
        return None
    records = {r.id: r for r in project.manifest()}
    scores = keypoint_nmi_ari(result, records, keypoints)
    nmi, ari = scores["nmi"], scores["ari"]
    return KeypointScores(
        nmi=None if math.isnan(nmi) else nmi,
        ari=None if math.isnan(ari) else ari,
        keypoints=int(scores["keypoints"]),
    )
