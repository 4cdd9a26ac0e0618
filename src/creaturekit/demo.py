"""The README's first command: a small offline end-to-end run (``python -m creaturekit.demo``).

It grows with the implemented stages. Today it builds the toy-world project (drawn
creatures of 24 species with their ground truth; see docs/toy-world.md) and prints
what the project holds. Running it again reuses the existing project.
"""

from __future__ import annotations

import sys
from pathlib import Path

from creaturekit import constants as C
from creaturekit.project import Project, open_project
from creaturekit.toy.dataset import create_toy_project


def run_demo(folder: str | Path = "demo") -> Project:
    """Create (or reuse) the toy demo project in ``folder`` and return it."""
    folder = Path(folder)
    if (folder / C.CONFIG_NAME).exists():
        return open_project(folder)
    return create_toy_project(folder, name="demo")


def main(argv: list[str] | None = None) -> None:
    """Run the demo and show the project like ``creaturekit info`` does."""
    from creaturekit.cli import app

    argv = sys.argv[1:] if argv is None else argv
    project = run_demo(argv[0] if argv else "demo")
    app(["info", "-C", str(project.root)])


if __name__ == "__main__":
    main()
