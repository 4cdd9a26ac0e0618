"""The project's ``mixes/``: every folder :func:`~creaturekit.generation.mix.write_mix`
wrote (by ``mix``, the demo or the studio), read back with its sidecars, filtered by part
code, and deleted only when it is exactly such a folder.

A folder is creaturekit's when its name is a ``write_mix`` stamp (``20260101-120000`` or
``20260101-120000-2``) and it holds nothing but ``mix-NNN.png``, ``mix-NNN.json`` and
``contact-sheet.png``; anything else in ``mixes/`` is listed nowhere and never deleted.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from creaturekit import fsutil
from creaturekit.errors import CreatureKitError, DamagedFileError
from creaturekit.project import Project

CONTACT_SHEET = "contact-sheet.png"
_STAMP = re.compile(r"\d{8}-\d{6}(-\d{1,6})?")
_FILE = re.compile(r"mix-\d{3,}\.(png|json)")


class MixNotFoundError(CreatureKitError):
    """A mix folder that is not in ``mixes/``, or not one creaturekit wrote."""


@dataclass
class MixFolder:
    """One written mix: its images with their sidecars (``records[i]`` describes ``images[i]``)."""

    path: Path
    images: list[str]
    records: list[dict[str, Any]]
    damaged: list[str] = field(default_factory=list)  # sidecars that could not be read

    @property
    def name(self) -> str:
        return self.path.name

    def codes(self) -> set[tuple[str, int]]:
        """Every (part, code) any of its images was made with."""
        return {pair for record in self.records for pair in record_codes(record)}


def record_codes(record: dict[str, Any]) -> list[tuple[str, int]]:
    """A sidecar's ``codes`` as (part, code) pairs; malformed entries are left out."""
    codes = record.get("codes")
    if not isinstance(codes, list):
        return []
    return [
        (c["part"], c["code"])
        for c in codes
        if isinstance(c, dict) and isinstance(c.get("part"), str) and type(c.get("code")) is int
    ]


def is_mix_folder(path: Path) -> bool:
    """Whether ``path`` is a folder exactly as ``write_mix`` leaves it."""
    if not (_STAMP.fullmatch(path.name) and path.is_dir() and not path.is_symlink()):
        return False
    names = [p.name for p in path.iterdir()]
    return CONTACT_SHEET in names and all(n == CONTACT_SHEET or _FILE.fullmatch(n) for n in names)


def read_mix(path: Path) -> MixFolder:
    """The images and sidecars of the mix folder ``path``."""
    images = sorted(p.name for p in path.glob("mix-*.png"))
    records, damaged = [], []
    for name in images:
        sidecar = path / f"{name[:-4]}.json"
        try:
            record = fsutil.read_json(sidecar) if sidecar.is_file() else {}
        except DamagedFileError:
            record = {}
        if not isinstance(record, dict) or not record:
            damaged.append(sidecar.name)
            record = {}
        records.append(record)
    return MixFolder(path=path, images=images, records=records, damaged=damaged)


def list_mixes(
    project: Project, part: str | None = None, code: int | None = None
) -> list[MixFolder]:
    """The project's mixes, newest first; only those made with ``part`` (and ``code``)."""
    if not project.mixes_dir.is_dir():
        return []
    folders = [read_mix(p) for p in project.mixes_dir.iterdir() if is_mix_folder(p)]
    folders.sort(key=lambda m: m.name, reverse=True)
    if part is not None:
        folders = [m for m in folders if any(p == part and code in (None, c) for p, c in m.codes())]
    return folders


def mix_folder(project: Project, name: str) -> Path:
    """``mixes/<name>``, refused unless it is a folder creaturekit wrote."""
    path = project.mixes_dir / name
    if "/" in name or "\\" in name or not is_mix_folder(path):
        raise MixNotFoundError(
            f"There is no mix {name!r} in {project.mixes_dir}; only folders written by "
            "`creaturekit mix` (or the studio) can be opened or deleted."
        )
    return path


def delete_mix(project: Project, name: str) -> None:
    """Delete the mix folder ``mixes/<name>`` (only one creaturekit wrote), under the lock."""
    with project.lock("mix"):
        path = mix_folder(project, name)
        trash = path.with_name(f".deleting-{name}")
        path.rename(trash)  # gone from mixes/ at once, even if the removal is interrupted
        shutil.rmtree(trash)
