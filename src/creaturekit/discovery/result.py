"""The discovery result in a project's ``discovery/`` folder: written once, read by later stages.

Files (names shared by writer and reader)::

    result.json            backend, params, parts, fg/bg evidence, notes, timing, image-set
                           hash, scale (images learnt from, k-means engine)
    config.json            the fitted discoverer's options (see Discoverer.save)
    centroids.safetensors  every level's centroids
    codes.jsonl            per image: {"id", "file", "codes": {part: code}, "caption"}
    masks.safetensors      "masks": (N, h, w) uint8 part labels at patch resolution

Everything is written to a staging folder first and then moved in with ``result.json``
last, so an interrupted discovery leaves the previous result intact. Every file carries
the same ``stamp``; a reader that finds mismatched stamps reports an incomplete result.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from creaturekit import constants as C
from creaturekit import fsutil
from creaturekit.discovery.base import CENTROIDS_FILE, CONFIG_FILE, Discoverer
from creaturekit.discovery.errors import DiscoveryResultError
from creaturekit.discovery.hierarchy import Part
from creaturekit.paths import inside

RESULT_FILE = "result.json"
CODES_FILE = "codes.jsonl"
MASKS_FILE = "masks.safetensors"
FEATURES_DIR = "features"
STAGING_PREFIX = ".staging-"
RESULT_FILES = (CONFIG_FILE, CENTROIDS_FILE, CODES_FILE, MASKS_FILE, RESULT_FILE)


@dataclass
class DiscoveryResult:
    """What ``discover`` found, as stored in the project (masks are loaded with it)."""

    backend: str
    params: dict[str, Any]
    parts: list[Part]
    foreground: dict[str, Any]
    facing: dict[str, Any]
    notes: list[str]
    timing: dict[str, Any]
    images_hash: str
    grid: tuple[int, int]
    stamp: str
    codes: list[dict[str, Any]] = field(repr=False)
    masks: np.ndarray = field(repr=False)
    scale: dict[str, Any] = field(default_factory=dict)  # images learnt from, k-means engine
    fitted_stamp: str = ""  # the stamp of the fit whose centroids these are (see update)

    def __post_init__(self) -> None:
        self.fitted_stamp = self.fitted_stamp or self.stamp

    @property
    def background_index(self) -> int:
        return next(p.index for p in self.parts if p.is_background)

    def summary(self) -> dict[str, Any]:
        """``result.json``'s content (everything but codes and masks)."""
        data = asdict(self)
        del data["codes"], data["masks"]
        data["grid"] = list(self.grid)
        data["images"] = len(self.codes)
        return data


def caption(codes: dict[str, int]) -> str:
    """The image's codes as part tokens, e.g. ``<0:12> <3:7> <8:3>``."""
    return " ".join(f"<{m}:{k}>" for m, k in codes.items())


def build_result(discoverer: Discoverer, records: list[Any], images_hash: str) -> DiscoveryResult:
    """Turn a fitted discoverer (fitted on ``records``' images) into a storable result."""
    coding, report = discoverer.coding_, discoverer.report_
    rows = []
    for record, codes in zip(records, coding.codes, strict=True):
        present = {str(m): int(k) for m, k in enumerate(codes) if k >= 0}
        rows.append(
            {"id": record.id, "file": record.file, "codes": present, "caption": caption(present)}
        )
    h, w = discoverer.grid_
    return DiscoveryResult(
        backend=discoverer.name,
        params=discoverer.get_params(),
        parts=report.parts,
        foreground=report.foreground,
        facing=report.facing,
        notes=report.notes,
        timing=discoverer.timing_,
        images_hash=images_hash,
        grid=(h, w),
        stamp=f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}",
        codes=rows,
        masks=coding.masks.reshape(-1, h, w),
        scale=report.scale,
    )


def write_result(
    folder: Path, result: DiscoveryResult, discoverer: Discoverer, extra_dirs: tuple[str, ...] = ()
) -> None:
    """Store ``result`` in ``folder`` all at once (see the module docstring).

    ``extra_dirs`` are folders already written into the staging folder by the caller
    (e.g. the report), obtained with :func:`staging_folder`.
    """
    staging = staging_folder(folder, result.stamp)
    meta = {"stamp": result.stamp}
    discoverer.save(staging, metadata=meta)
    fsutil.write_jsonl(staging / CODES_FILE, result.codes)
    masks = {"masks": np.ascontiguousarray(result.masks)}
    fsutil.save_safetensors(masks, staging / MASKS_FILE, metadata=meta)
    fsutil.write_json(staging / RESULT_FILE, result.summary())
    for name in extra_dirs:
        old = folder / name
        if old.exists():
            os.replace(old, staging / f".old-{name}")
        os.replace(staging / name, old)
    for name in RESULT_FILES:
        os.replace(staging / name, folder / name)
    shutil.rmtree(staging, ignore_errors=True)


def staging_folder(folder: Path, stamp: str) -> Path:
    """The staging folder of the result with ``stamp`` (created on first use)."""
    staging = folder / f"{STAGING_PREFIX}{stamp}"
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def clean_staging(folder: Path) -> None:
    """Remove staging folders left by interrupted runs."""
    for stale in folder.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)


def read_result(folder: Path) -> DiscoveryResult:
    """The result stored in ``folder`` (a project's ``discovery/``), checked whole.

    A damaged file raises :class:`~creaturekit.errors.DamagedFileError` naming it; files
    from different discoveries raise :class:`DiscoveryResultError`.
    """
    path = folder / RESULT_FILE
    if not path.is_file():
        raise DiscoveryResultError(
            "No discovery result in this project yet; run `creaturekit discover` first."
        )
    missing = [name for name in RESULT_FILES if not (folder / name).is_file()]
    if missing:
        raise DiscoveryResultError(
            f"The discovery result in {folder} is incomplete (no {', '.join(missing)}); "
            "run `creaturekit discover` again."
        )
    data = fsutil.read_json(path)
    result = _parse_summary(path, data)
    codes = _read_codes(folder / CODES_FILE)
    masks = _read_masks(folder / MASKS_FILE, result.stamp, result.grid)
    fsutil.read_json(folder / CONFIG_FILE)  # damage shows here, not in a later stage
    _check_centroids(folder / CENTROIDS_FILE, result.stamp, result.parts)
    images = data.get("images", len(masks))
    for name, count in ((CODES_FILE, len(codes)), (MASKS_FILE, len(masks))):
        if count != images:
            raise fsutil.damaged(folder / name, f"{count} images where {RESULT_FILE} has {images}")
    result.codes, result.masks = codes, masks
    return result


def _parse_summary(path: Path, data: Any) -> DiscoveryResult:
    """``result.json``'s content as a result without codes and masks (yet)."""
    try:
        result = DiscoveryResult(
            backend=str(data["backend"]),
            params=dict(data["params"]),
            parts=[Part.from_json(p) for p in data["parts"]],
            foreground=data["foreground"],
            facing=data.get("facing", {}),  # absent before parts were placed by facing
            notes=data["notes"],
            timing=data["timing"],
            images_hash=data["images_hash"],
            grid=(int(data["grid"][0]), int(data["grid"][1])),
            stamp=str(data["stamp"]),
            codes=[],
            masks=np.zeros((0, 0, 0), np.uint8),
            scale=dict(data.get("scale", {})),  # absent before discovery scaled
            fitted_stamp=str(data.get("fitted_stamp", "")),  # absent before updates
        )
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise fsutil.damaged(path, f"no valid {err}") from None
    return result


def _read_codes(path: Path) -> list[dict[str, Any]]:
    rows = fsutil.read_jsonl(path)
    if not all(isinstance(r.get("codes"), dict) and "id" in r and "file" in r for r in rows):
        raise fsutil.damaged(path, "a line lacks its id, file or codes")
    images = path.parent.parent / C.IMAGES_DIR
    for row in rows:  # image files are read from images/: never from elsewhere
        inside(images, str(row["file"]), f"{path.parent.name}/{path.name}")
    return rows


def _read_masks(path: Path, stamp: str, grid: tuple[int, int]) -> np.ndarray:
    masks = fsutil.load_safetensors(path, framework="numpy").get("masks")
    if not isinstance(masks, np.ndarray) or masks.ndim != 3 or masks.shape[1:] != grid:
        raise fsutil.damaged(path, f"no masks of the {grid[0]}x{grid[1]} patch grid")
    _check_stamp(path, stamp)
    return masks


def _check_centroids(path: Path, stamp: str, parts: list[Part]) -> None:
    """Every part of ``result.json`` has as many sub-concept centroids as it says."""
    tensors = fsutil.load_safetensors(path, framework="numpy")
    want = [p.subconcepts for p in parts]
    found = [len(tensors[f"sub.{m}"]) for m in range(len(parts)) if f"sub.{m}" in tensors]
    if "parts.centroids" not in tensors or len(tensors["parts.centroids"]) + 1 != len(parts):
        raise fsutil.damaged(path, f"not the centroids of {len(parts)} parts")
    if found != want:
        raise fsutil.damaged(
            path, f"sub-concepts per part {found}, where {RESULT_FILE} says {want}"
        )
    _check_stamp(path, stamp)


def _check_stamp(path: Path, stamp: str) -> None:
    if fsutil.safetensors_metadata(path).get("stamp") != stamp:
        raise DiscoveryResultError(
            f"{path} is from another discovery than {RESULT_FILE}; "
            "run `creaturekit discover` again."
        )
