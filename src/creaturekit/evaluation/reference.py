"""Reference scorers: ground truth a project's own world provides, found as plugins.

``eval`` knows no world. A world that can judge generated images independently (the toy
world: true parts and variants, and an oracle that reads them) registers a scorer in the
``creaturekit.references`` entry-point group, as discovery backends register theirs. A
scorer takes the project and its discovery result and returns a :class:`Reference`, or
``None`` when the project is not of its world; the first reference found is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol

from PIL import Image

from creaturekit.errors import CreatureKitError
from creaturekit.evaluation.combinations import Combination
from creaturekit.evaluation.metrics import OracleScores
from creaturekit.project import Project

GROUP = "creaturekit.references"


class Reference(Protocol):
    """What a world knows about one project's discovery result."""

    @property
    def discovery(self) -> dict[str, Any]:
        """Discovery figures against the world's ground truth (NMI, ARI, purity...)."""
        ...

    def score(
        self,
        requested: Sequence[Combination],
        images: Sequence[Image.Image],
        names: dict[int, str],
    ) -> OracleScores:
        """Per image ``i``, whether it shows the parts ``requested[i]`` asked for: the
        share of requested parts drawn right, overall and per part name."""
        ...


ReferenceScorer = Callable[[Project, Any], "Reference | None"]


def find_reference(project: Project, result: Any) -> Reference | None:
    """The reference of the first registered world that knows ``project`` (or ``None``)."""
    for ep in sorted(entry_points(group=GROUP), key=lambda ep: ep.name):
        try:
            scorer: ReferenceScorer = ep.load()
        except Exception as err:  # a plugin's own bug must not crash eval
            raise CreatureKitError(
                f"The reference scorer {ep.name!r} ({ep.value}) failed to load "
                f"({type(err).__name__}: {err}). Reinstall or update its package."
            ) from None
        reference = scorer(project, result)
        if reference is not None:
            return reference
    return None
