"""creaturekit: invent new creatures from parts of real ones.

The library is the product; the ``creaturekit`` command is a thin layer over it::

    import creaturekit as ck
    project = ck.init_project("birds/", images="~/CUB_200_2011")
    project = ck.open_project("birds/")
"""

from __future__ import annotations

__version__ = "0.1.0"

from creaturekit.errors import CreatureKitError
from creaturekit.project import Project, init_project, open_project

__all__ = ["CreatureKitError", "Project", "__version__", "init_project", "open_project"]
