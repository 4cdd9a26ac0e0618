"""Discovery NMI/ARI at CUB or toy keypoints, by the protocol of docs/method.md section 4."""

from __future__ import annotations

from typing import Any

from creaturekit.discovery.keypoint_scores import keypoint_nmi_ari
from creaturekit.project import Project


def keypoint_scores(project: Project, result: Any) -> dict[str, float] | None:
    """NMI and ARI (x 100) of the discovered parts at the annotated keypoints (None without)."""
    keypoints = project.keypoints()
    if not keypoints:
        return None
    records = {r.id: r for r in project.manifest()}
    return keypoint_nmi_ari(result, records, keypoints)
