"""The toy world's reference scorer for ``eval``: ground-truth discovery scores and the
oracle's judgement (registered in the ``creaturekit.references`` entry-point group).

In a toy project every discovered part is matched to the true part it covers most and
each of its sub-concepts to the true variant its images mostly show. A generated
creature asked for (part, code) is then right when the independent oracle reads that
true variant on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from creaturekit.errors import StageMissingError
from creaturekit.evaluation.combinations import Combination
from creaturekit.evaluation.metrics import OracleScores
from creaturekit.project import Project


@dataclass
class ToyReference:
    """Discovered part -> true part, (part, code) -> true variant, and discovery scores."""

    part_of: dict[int, str]
    variant_of: dict[int, dict[int, int]]
    discovery: dict[str, Any]

    def score(
        self,
        requested: Sequence[Combination],
        images: Sequence[Image.Image],
        names: dict[int, str],
    ) -> OracleScores:
        """Share of requested parts whose true variant the oracle reads on the image."""
        from creaturekit.toy.oracle import COLUMNS, load_oracle

        predicted = load_oracle().predict(list(images)) if images else np.zeros((0, len(COLUMNS)))
        hits: dict[str, list[float]] = {}
        for i, combo in enumerate(requested):
            for m, k in combo.items():
                expected = self.variant_of.get(m, {}).get(k)
                column = COLUMNS.index(self.part_of[m]) if m in self.part_of else None
                ok = column is not None and expected is not None
                ok = ok and predicted[i, column] == expected
                hits.setdefault(names[m], []).append(float(ok))
        every = [v for values in hits.values() for v in values]
        return OracleScores(
            accuracy=float(np.mean(every)) if every else 0.0,
            per_part={name: float(np.mean(v)) for name, v in hits.items()},
        )


def toy_reference(project: Project, result: Any) -> ToyReference | None:
    """The reference of a toy project's discovery result (None outside the toy world)."""
    from creaturekit.toy.dataset import load_ground_truth
    from creaturekit.toy.discovery_scores import discovery_scores

    try:
        truth = load_ground_truth(project)
    except StageMissingError:
        return None
    ids = [int(row["id"]) for row in result.codes]
    masks = {i: np.asarray(result.masks[j]) for j, i in enumerate(ids)}
    codes = {
        int(row["id"]): {int(m): int(k) for m, k in row["codes"].items()} for row in result.codes
    }
    scores = discovery_scores(truth, masks, codes)
    return ToyReference(
        part_of={p["index"]: p["ground_truth"] for p in scores["parts"]},
        variant_of={p["index"]: p["majority"] for p in scores["parts"]},
        discovery={k: scores[k] for k in ("nmi", "ari", "fg_nmi", "fg_ari")}
        | {"purity": {str(p["index"]): p["purity"] for p in scores["parts"]}},
    )
