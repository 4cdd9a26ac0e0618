"""The README's first command: an offline end-to-end run (``python -m creaturekit.demo DIR``).

It grows with the implemented stages. Today it builds the toy-world project (drawn
creatures of 24 species with their ground truth; see docs/toy-world.md), discovers its
parts with the offline ``effnet-kmeans`` backend, and shows the project and the path of
the discovery report. Running it again reuses what exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

from creaturekit import constants as C
from creaturekit.project import Project, open_project
from creaturekit.toy.dataset import create_toy_project


def run_demo(folder: str | Path = "demo") -> Project:
    """Create (or reuse) the toy demo project in ``folder``, discover its parts; return it."""
    from creaturekit.discovery.result import RESULT_FILE
    from creaturekit.discovery.stage import discover

    folder = Path(folder)
    if not (folder / C.CONFIG_NAME).exists():
        create_toy_project(folder, name="demo")
    project = open_project(folder)
    if not (project.discovery_dir / RESULT_FILE).is_file():
        with project.lock("discover"):
            discover(project)
    return project


def main(argv: list[str] | None = None) -> None:
    """Run the demo, then show the project like ``creaturekit info`` does."""
    from creaturekit.cli import app

    argv = sys.argv[1:] if argv is None else argv
    project = run_demo(argv[0] if argv else "demo")
    print(f"Discovered parts: {project.discovery_dir / 'report.html'}")
    app(["info", "-C", str(project.root)], standalone_mode=False)


if __name__ == "__main__":
    main()
