"""Image sources ``init`` recognises: a plain folder, CUB-200-2011 and Stanford Dogs.

A source is read into a list of :class:`SourceImage` (file, label, split) plus, for
CUB, the part keypoints kept for evaluation. Nothing is copied here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from creaturekit.constants import IMAGE_EXTENSIONS
from creaturekit.errors import ImageSourceError


@dataclass
class SourceImage:
    """One file of a source: ``rel`` is its path relative to the source's image root."""

    path: Path
    rel: str
    label: str | None = None
    split: str = "train"
    key: str | None = None  # the data set's own image id (CUB), used to attach keypoints


@dataclass
class ImageSource:
    """A recognised source and its images."""

    kind: str  # "folder", "cub" or "dogs"
    root: Path
    images: list[SourceImage]
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (rel path, reason)
    keypoints: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)


def read_source(path: str | Path) -> ImageSource:
    """Recognise the layout at ``path`` and list its images."""
    root = Path(path).expanduser()
    if not root.exists():
        raise ImageSourceError(f"The image source {root} does not exist.")
    if not root.is_dir():
        raise ImageSourceError(f"The image source {root} is not a folder.")
    for candidate in (root, root.parent):
        if (candidate / "images.txt").is_file() and (candidate / "images").is_dir():
            return _read_cub(candidate.resolve())
        if (candidate / "Images").is_dir() and (candidate / "lists").is_dir():
            return _read_dogs(candidate.resolve())
    return _read_folder(root.resolve())


def _read_folder(root: Path) -> ImageSource:
    images: list[SourceImage] = []
    ignored: list[tuple[str, str]] = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if any(part.startswith(".") for part in p.relative_to(root).parts) or not p.is_file():
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(SourceImage(path=p, rel=rel))
        else:
            ignored.append((rel, "not an image file (extension)"))
    return ImageSource(kind="folder", root=root, images=images, ignored=ignored)


def _table(path: Path) -> list[list[str]]:
    """Rows of a whitespace-separated CUB text file."""
    if not path.is_file():
        raise ImageSourceError(
            f"{path.name} is missing from the CUB-200-2011 folder {path.parent}."
        )
    return [line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip()]


def _read_cub(root: Path) -> ImageSource:
    files = dict(_table(root / "images.txt"))
    split_file = root / "train_test_split.txt"
    splits = (
        {k: ("train" if v.strip() == "1" else "test") for k, v in _table(split_file)}
        if (split_file.is_file())
        else {}
    )
    labels: dict[str, str] = {}
    if (root / "image_class_labels.txt").is_file() and (root / "classes.txt").is_file():
        classes = dict(_table(root / "classes.txt"))
        labels = {
            k: classes.get(v.strip(), v.strip()) for k, v in _table(root / "image_class_labels.txt")
        }
    images = [
        SourceImage(
            path=root / "images" / rel,
            rel=rel,
            label=labels.get(key),
            split=splits.get(key, "train"),
            key=key,
        )
        for key, rel in files.items()
    ]
    return ImageSource(kind="cub", root=root, images=images, keypoints=_read_cub_keypoints(root))


def _read_cub_keypoints(root: Path) -> dict[str, dict[str, tuple[float, float]]]:
    locs, names_file = root / "parts" / "part_locs.txt", root / "parts" / "parts.txt"
    if not locs.is_file() or not names_file.is_file():
        return {}
    names = {k: v.strip() for k, v in _table(names_file)}
    points: dict[str, dict[str, tuple[float, float]]] = {}
    for line in locs.read_text().splitlines():
        cols = line.split()
        if len(cols) == 5 and cols[4] == "1":
            points.setdefault(cols[0], {})[names.get(cols[1], cols[1])] = (
                float(cols[2]),
                float(cols[3]),
            )
    return points


def _read_dogs(root: Path) -> ImageSource:
    splits: dict[str, str] = {}
    for split in ("train", "test"):
        mat = root / "lists" / f"{split}_list.mat"
        if mat.is_file():
            splits.update(dict.fromkeys(_mat_file_list(mat), split))
    images = []
    for p in sorted((root / "Images").rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            rel = p.relative_to(root / "Images").as_posix()
            breed = p.parent.name.split("-", 1)[-1].replace("_", " ")
            images.append(SourceImage(path=p, rel=rel, label=breed, split=splits.get(rel, "train")))
    return ImageSource(kind="dogs", root=root, images=images)


def _mat_file_list(path: Path) -> list[str]:
    """The ``file_list`` cell array of a Stanford Dogs list file (MATLAB, not pickle)."""
    from scipy.io import loadmat

    try:
        cells = loadmat(path)["file_list"]
    except (ValueError, KeyError, OSError) as err:
        raise ImageSourceError(f"Could not read the Stanford Dogs list {path}: {err}.") from err
    out = []
    for cell in cells.ravel():
        while not isinstance(cell, str):
            cell = cell[0] if len(cell) else ""
        out.append(cell)
    return out
