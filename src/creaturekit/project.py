"""A creaturekit project: a portable folder holding settings, images and every stage's output.

Only relative paths are stored inside, so the folder can be moved, zipped or shared.
Commands find the project like git finds a repository: the given folder, or the
nearest parent holding ``creaturekit.toml``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from creaturekit import constants as C
from creaturekit import fsutil
from creaturekit.config import Config, load_config, render_config
from creaturekit.errors import (
    CreatureKitError,
    ImageSourceError,
    ProjectExistsError,
    ProjectNotFoundError,
)
from creaturekit.images import ImageRecord, ImportReport, content_hash, import_images
from creaturekit.lock import lock_holder, project_lock
from creaturekit.paths import inside
from creaturekit.sources import read_source


def find_project_root(start: str | Path | None = None) -> Path:
    """The folder holding ``creaturekit.toml``: ``start`` or its nearest parent that has one."""
    here = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / C.CONFIG_NAME).is_file():
            return folder
    raise ProjectNotFoundError(
        f"No creaturekit project in {here} or any parent folder. "
        "Create one with `creaturekit init DIR --images SRC`, or pass the folder with -C DIR."
    )


@dataclass
class Project:
    """An opened project folder."""

    root: Path
    config: Config = field(default_factory=Config)

    # -- paths ---------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / C.CONFIG_NAME

    @property
    def images_dir(self) -> Path:
        return self.root / C.IMAGES_DIR

    @property
    def discovery_dir(self) -> Path:
        return self.root / C.DISCOVERY_DIR

    @property
    def runs_dir(self) -> Path:
        return self.root / C.RUNS_DIR

    @property
    def mixes_dir(self) -> Path:
        return self.root / C.MIXES_DIR

    @property
    def eval_dir(self) -> Path:
        return self.root / C.EVAL_DIR

    # -- settings and locking --------------------------------------------------------
    def save_config(self) -> None:
        """Write ``creaturekit.toml`` atomically."""
        fsutil.write_text(self.config_path, render_config(self.config))

    def lock(self, command: str) -> contextlib.AbstractContextManager[None]:
        """Hold the project lock while a mutating ``command`` runs."""
        return project_lock(self.root / C.LOCK_NAME, command)

    def lock_holder(self) -> dict[str, Any] | None:
        """The command changing the project now (see :func:`creaturekit.lock.lock_holder`)."""
        return lock_holder(self.root / C.LOCK_NAME)

    # -- images ----------------------------------------------------------------------
    def manifest(self) -> list[ImageRecord]:
        """Every imported image, in id order."""
        path = self.images_dir / C.MANIFEST_NAME
        if not path.is_file():
            return []
        records = []
        for row in fsutil.read_jsonl(path):
            try:
                records.append(ImageRecord.from_dict(row))
            except (KeyError, TypeError, ValueError) as err:
                raise fsutil.damaged(path, f"bad entry {str(row)[:80]}: {err!r}") from None
            inside(self.images_dir, records[-1].file, f"{C.IMAGES_DIR}/{C.MANIFEST_NAME}")
        return records

    def images(self, split: str | None = None) -> list[ImageRecord]:
        """Images of ``split`` (default: the ``images.split`` setting; "all" for every one)."""
        split = split or self.config.images.split
        records = self.manifest()
        return records if split == "all" else [r for r in records if r.split == split]

    def image_path(self, record: ImageRecord) -> Path:
        """Absolute path of an imported image (refused if the manifest points outside)."""
        return inside(self.images_dir, record.file, f"{C.IMAGES_DIR}/{C.MANIFEST_NAME}")

    def images_hash(self, split: str | None = None) -> str:
        """Content hash of the image set a stage uses (recorded by later stages)."""
        return content_hash(self.images(split))

    def keypoints(self) -> dict[int, dict[str, tuple[float, float]]]:
        """Part keypoints by image id: CUB's annotations, the toy world's part centres, or empty."""
        path = self.images_dir / C.KEYPOINTS_NAME
        if not path.is_file():
            return {}
        return {
            row["id"]: {k: tuple(v) for k, v in row["points"].items()}
            for row in fsutil.read_jsonl(path)
        }

    def last_import(self) -> ImportReport | None:
        """The report of the most recent image import, if any."""
        path = self.images_dir / C.IMPORT_REPORT_NAME
        if not path.is_file():
            return None
        return ImportReport.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def add_images(
        self, source: str | Path, *, link: bool = False, split: str = "all"
    ) -> ImportReport:
        """Import the images of ``source`` (folder, CUB-200-2011 or Stanford Dogs).

        Images already in the project (same content) are not added again. The manifest
        is written even when the import is interrupted, so it always matches the files.
        """
        src = read_source(source)
        if not src.images:
            raise ImageSourceError(f"No images found in {src.root}.")
        splits = ("train", "test") if split == "all" else (split,)
        report = ImportReport(source=src.root.name, kind=src.kind)
        with self.lock("init"):
            existing = self.manifest()
            new: list[ImageRecord] = []
            keypoints: dict[int, dict[str, tuple[float, float]]] = {}
            try:
                for record, points in import_images(
                    self.images_dir,
                    src,
                    existing,
                    report,
                    link=link,
                    min_side=self.config.images.min_side,
                    splits=splits,
                ):
                    new.append(record)
                    if points:
                        keypoints[record.id] = points
            finally:
                report.added, report.keypoints = len(new), len(keypoints)
                self._append_manifest(existing, new, keypoints)
                fsutil.write_json(self.images_dir / C.IMPORT_REPORT_NAME, report.to_dict())
        if not new and not report.already_present:
            reasons = "; ".join(f"{file}: {why}" for file, why in report.skipped[:3])
            more = len(report.skipped) - 3
            raise ImageSourceError(
                f"None of the {len(src.images)} files in {src.root} could be imported ("
                + (reasons or "no readable image")
                + (f"; and {more} more" if more > 0 else "")
                + ")."
            )
        return report

    def _append_manifest(
        self, existing: list[ImageRecord], new: list[ImageRecord], keypoints: dict[int, Any]
    ) -> None:
        if not new:
            return
        fsutil.write_jsonl(
            self.images_dir / C.MANIFEST_NAME, [r.__dict__ for r in [*existing, *new]]
        )
        if keypoints:
            self.save_keypoints({**self.keypoints(), **keypoints})

    def save_keypoints(self, keypoints: dict[int, dict[str, tuple[float, float]]]) -> None:
        """Write the part keypoints (x, y in image pixels) of every image, replacing the file."""
        rows = [
            {"id": i, "points": {k: list(v) for k, v in p.items()}} for i, p in keypoints.items()
        ]
        fsutil.write_jsonl(self.images_dir / C.KEYPOINTS_NAME, rows)


def open_project(path: str | Path | None = None) -> Project:
    """Open the project at ``path`` (or the nearest parent holding ``creaturekit.toml``)."""
    root = find_project_root(path)
    return Project(root=root, config=load_config(root / C.CONFIG_NAME))


def init_project(
    path: str | Path,
    *,
    images: str | Path | None = None,
    link: bool = False,
    name: str | None = None,
    force: bool = False,
    split: str = "all",
) -> Project:
    """Create a project folder (or, with ``force``, add images to an existing one).

    Settings of an existing project are kept with ``force``; only ``name`` updates them.
    """
    root = Path(path).expanduser().resolve()
    if (root / C.CONFIG_NAME).exists():
        if not force:
            raise ProjectExistsError(
                f"{root} already holds a creaturekit project. "
                "Use --force to add images to it (its settings are kept)."
            )
        project = open_project(root)
    else:
        if root.exists() and not root.is_dir():
            raise ProjectExistsError(f"{root} exists and is not a folder.")
        if images is not None:  # fail on a bad source before creating anything
            src = read_source(images)
            if not src.images:
                raise ImageSourceError(f"No images found in {src.root}.")
        project = Project(root=root, config=Config())
        project.config.project.name = root.name
    fresh = not project.config_path.exists()
    created_root = not root.exists()
    created_images = not project.images_dir.exists()
    if name:
        project.config.project.name = name
    root.mkdir(parents=True, exist_ok=True)
    project.images_dir.mkdir(exist_ok=True)
    with project.lock("init"):
        project.save_config()
    if images is not None:
        try:
            project.add_images(images, link=link, split=split)
        except CreatureKitError:
            if fresh:  # nothing usable was made: leave the folder as it was
                project.config_path.unlink(missing_ok=True)
                if created_root or created_images:
                    shutil.rmtree(root if created_root else project.images_dir)
            raise
    return project
