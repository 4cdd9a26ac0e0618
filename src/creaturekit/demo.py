"""The README's first command: a small offline end-to-end run (``python -m creaturekit.demo``).

It grows with the implemented stages. Today it builds a project from the real animal
photos that ship with scikit-image (plus a few odd files that import must handle) and
prints what the project holds. Running it again reuses the existing project.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from creaturekit.project import Project, init_project, open_project


def _sample_photos(folder: Path) -> None:
    """Write scikit-image's photos (cat, astronaut, coffee...) as JPEG/PNG files."""
    from PIL import Image
    from skimage import data

    for name in ("chelsea", "astronaut", "coffee", "rocket", "cat", "camera"):
        arr = getattr(data, name)()
        Image.fromarray(arr).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")


def run_demo(folder: str | Path = "demo") -> Project:
    """Create (or reuse) the demo project in ``folder`` and return it."""
    folder = Path(folder)
    if (folder / "creaturekit.toml").exists():
        return open_project(folder)
    with tempfile.TemporaryDirectory() as tmp:
        _sample_photos(Path(tmp))
        return init_project(folder, images=tmp, name="demo")


def main(argv: list[str] | None = None) -> None:
    """Run the demo and show the project like ``creaturekit info`` does."""
    from creaturekit.cli import app

    argv = sys.argv[1:] if argv is None else argv
    project = run_demo(argv[0] if argv else "demo")
    app(["info", "-C", str(project.root)])


if __name__ == "__main__":
    main()
