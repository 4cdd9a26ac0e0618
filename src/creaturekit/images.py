"""Import images into a project: validate, normalise to 8-bit RGB, deduplicate, record.

Every file of a source ends up either in ``images/`` (listed in ``manifest.jsonl``) or
in the import report with the reason it was skipped. Odd but readable images (CMYK,
16-bit, palette, alpha, grayscale, EXIF-rotated, animated) are converted to RGB PNG.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from creaturekit import fsutil
from creaturekit.progress import track
from creaturekit.sources import ImageSource, SourceImage

PASSTHROUGH_FORMATS = {"JPEG": {".jpg", ".jpeg"}, "PNG": {".png"}}


@dataclass
class ImageRecord:
    """One imported image, as stored in ``images/manifest.jsonl``."""

    id: int
    file: str  # relative to the project's images/ folder, POSIX separators
    sha256: str
    width: int
    height: int
    source: str  # path inside the source it came from
    dataset: str  # "folder", "cub", "dogs" or "toy"
    split: str = "train"
    label: str | None = None
    converted: str | None = None  # why the file was re-encoded, if it was

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class ImportReport:
    """What an import did: counts, conversions and skipped files with reasons."""

    source: str
    kind: str
    added: int = 0
    already_present: int = 0
    converted: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    keypoints: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("converted", "skipped"):
            fields[key] = [tuple(pair) for pair in fields.get(key, [])]
        return cls(**fields)


class ImageProblem(Exception):
    """An image that cannot be imported; the message is the reason."""


def open_for_import(path: Path, min_side: int) -> tuple[Image.Image, str | None]:
    """Open ``path`` as 8-bit RGB; return the image and why it must be re-encoded.

    The reason is None when the file can be used byte for byte (an RGB JPEG or PNG).
    """
    try:
        with Image.open(path) as probe:
            probe.verify()
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(path)
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageProblem(f"corrupt or not an image ({type(err).__name__})") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageProblem("image too large (decompression bomb guard)") from err
    reasons = []
    fmt = im.format or ""
    ext_ok = path.suffix.lower() in PASSTHROUGH_FORMATS.get(fmt, set())
    if not ext_ok:
        reasons.append(f"{fmt or 'unknown'} file re-encoded as PNG")
    if getattr(im, "n_frames", 1) > 1:
        reasons.append("first frame of an animation")
    orientation = im.getexif().get(0x0112, 1)
    if orientation not in (0, 1):
        im = ImageOps.exif_transpose(im)
        reasons.append("EXIF rotation applied")
    if im.mode != "RGB":
        reasons.append(f"{im.mode} -> RGB")
        im = _to_rgb(im)
    if min(im.size) < min_side:
        raise ImageProblem(f"too small ({im.width}x{im.height} < {min_side} px)")
    return im, "; ".join(reasons) or None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


#: Longest file name kept as it is (bytes); file systems allow 255, and atomic writes add a few.
MAX_NAME_BYTES = 200


def _dest_name(rel: str, converted: bool, taken: set[str], digest: str, folder: Path) -> str:
    """The image's name in ``folder``: its source path, unless that is taken (by the
    manifest or by a file creaturekit did not write, which is never replaced)."""
    p = PurePosixPath(rel)
    if converted:
        p = p.with_suffix(".png")
    if len(p.name.encode()) > MAX_NAME_BYTES:  # keep the start, made unique by the content hash
        stem = p.stem.encode()[: MAX_NAME_BYTES // 2].decode(errors="ignore")
        p = p.with_name(f"{stem}_{digest[:8]}{p.suffix[:16]}")
    name = str(p)
    if name in taken or os.path.lexists(folder / name):
        name = str(p.with_name(f"{p.stem}_{digest[:8]}{p.suffix}"))
    return name


def import_images(
    images_dir: Path,
    source: ImageSource,
    existing: list[ImageRecord],
    report: ImportReport,
    *,
    link: bool = False,
    min_side: int = 64,
    splits: tuple[str, ...] = ("train", "test"),
) -> Iterator[tuple[ImageRecord, dict[str, tuple[float, float]] | None]]:
    """Copy (or link) ``source``'s images into ``images_dir``, one at a time.

    Yields each new record with its keypoints (CUB) as soon as its file is written
    (atomically), so a caller interrupted mid-way still knows exactly what is on disk.
    Skips and conversions are added to ``report``.
    """
    report.skipped.extend(source.ignored)
    by_hash = {r.sha256: r for r in existing}
    taken = {r.file for r in existing}
    next_id = max((r.id for r in existing), default=0) + 1
    wanted = [s for s in source.images if s.split in splits]
    for item in track(wanted, "Importing images", total=len(wanted)):
        record = _import_one(
            images_dir,
            source.kind,
            item,
            by_hash,
            taken,
            next_id,
            report,
            link=link,
            min_side=min_side,
        )
        if record is None:
            continue
        by_hash[record.sha256] = record
        taken.add(record.file)
        next_id += 1
        yield record, source.keypoints.get(item.key) if item.key is not None else None


def _import_one(
    images_dir: Path,
    kind: str,
    item: SourceImage,
    by_hash: dict[str, ImageRecord],
    taken: set[str],
    next_id: int,
    report: ImportReport,
    *,
    link: bool,
    min_side: int,
) -> ImageRecord | None:
    if not item.path.is_file():
        report.skipped.append((item.rel, "listed by the data set but missing"))
        return None
    digest = fsutil.sha256_file(item.path)
    if digest in by_hash:
        twin = by_hash[digest]
        if twin.source == item.rel:
            report.already_present += 1
        else:
            report.skipped.append((item.rel, f"duplicate of {twin.file}"))
        return None
    try:
        im, change = open_for_import(item.path, min_side)
    except ImageProblem as err:
        report.skipped.append((item.rel, str(err)))
        return None
    name = _dest_name(item.rel, change is not None, taken, digest, images_dir)
    try:
        _write_image(images_dir / name, item.path, im if change is not None else None, link)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise  # the project cannot take any image: stop the import
        report.skipped.append((item.rel, f"could not be written ({err.strerror or err})"))
        return None
    if change is not None:
        report.converted.append((item.rel, change))
    return ImageRecord(
        id=next_id,
        file=name,
        sha256=digest,
        width=im.width,
        height=im.height,
        source=item.rel,
        dataset=kind,
        split=item.split,
        label=item.label,
        converted=change,
    )


def _write_image(dest: Path, source: Path, converted: Image.Image | None, link: bool) -> None:
    """Write one imported image: the re-encoded PNG, a link to the source, or a copy."""
    if converted is not None:
        with fsutil.atomic_path(dest) as tmp:
            converted.save(tmp, format="PNG")
    elif link:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        os.symlink(source.resolve(), dest)
    else:
        with fsutil.atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)


def content_hash(records: list[ImageRecord]) -> str:
    """A hash of an image set (ids and contents): later stages record what they used."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.id):
        h.update(f"{r.id}:{r.sha256}\n".encode())
    return h.hexdigest()[:16]
