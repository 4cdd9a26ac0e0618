"""creaturekit: invent new creatures from parts of real ones.

The library is the product; the ``creaturekit`` command is a thin layer over it. The
whole method from Python (docs/method.md)::

    import creaturekit as ck

    project = ck.init_project("birds/", images="~/CUB_200_2011")
    ck.discover(project, parts=8)                     # stage 1: parts and sub-concepts
    ck.name_part(project, 3, "head")                  # mix by name: {"head": ...}
    ck.fit(project, run="birds", steps=1000)          # stage 2: tokens, mapper, LoRA
    mix = ck.mix(project, {"head": [[42]], "wings": [[87]]}, run="birds")  # -> mixes/
    metrics = ck.evaluate(project, "birds")           # EMR, CoSim, image metrics
    ck.export_run(project, "a1111", "birds")          # for other Stable Diffusion tools
    ck.import_run(copy, "export-a1111/")   # a shared export back into a copy of the project

Each stage takes the project lock itself and checks its inputs before loading a model.
The stage functions are imported on first use, so ``import creaturekit`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from creaturekit.errors import CreatureKitError
from creaturekit.project import Project, init_project, open_project
from creaturekit.version import __version__

if TYPE_CHECKING:
    from creaturekit.discovery.discover import discover
    from creaturekit.discovery.naming import name_part
    from creaturekit.evaluation.evaluate import evaluate
    from creaturekit.generation.export import export_run
    from creaturekit.generation.import_run import import_run
    from creaturekit.generation.mix import mix
    from creaturekit.training.fit import fit

#: The method's stages, by name -> the module that holds them (imported on first use).
_STAGES = {
    "discover": "creaturekit.discovery.discover",
    "name_part": "creaturekit.discovery.naming",
    "fit": "creaturekit.training.fit",
    "mix": "creaturekit.generation.mix",
    "evaluate": "creaturekit.evaluation.evaluate",
    "export_run": "creaturekit.generation.export",
    "import_run": "creaturekit.generation.import_run",
}


def __getattr__(name: str) -> Any:
    if name in _STAGES:
        return getattr(importlib.import_module(_STAGES[name]), name)
    raise AttributeError(f"module 'creaturekit' has no attribute {name!r}")


__all__ = [
    "CreatureKitError",
    "Project",
    "__version__",
    "discover",
    "evaluate",
    "export_run",
    "fit",
    "import_run",
    "init_project",
    "mix",
    "name_part",
    "open_project",
]
