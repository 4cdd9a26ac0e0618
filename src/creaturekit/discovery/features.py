"""Image preprocessing and the on-disk feature cache shared by every backend.

Images are squashed to a square ``image_size`` (no crop, so patch masks cover the
whole picture) and normalised. Features are cached as one fp16 safetensors file per
image content hash, under a folder named by a hash of the backbone and preprocessing,
so a rerun (or a rerun after adding images) only computes what is missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from creaturekit import fsutil
from creaturekit.errors import DamagedFileError, ImageSourceError

ImageInput = str | Path | Image.Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KEY_FILE = "key.json"
TENSOR = "features"


def load_rgb(image: ImageInput) -> Image.Image:
    """``image`` (a path or a PIL image) as RGB."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        with Image.open(image) as im:
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise unreadable_image(image, err) from None


def unreadable_image(path: str | Path, err: BaseException) -> ImageSourceError:
    """The error for an image file that is gone or no longer an image (e.g. since import)."""
    missing = isinstance(err, FileNotFoundError)
    what = "is missing" if missing else f"is not a readable image ({err})"
    return ImageSourceError(
        f"The image {path} {what}; put the original file back, or import the images that "
        "remain into a new project with `creaturekit init NEWDIR --images SRC`."
    )


def to_pixels(
    images: Sequence[ImageInput],
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> np.ndarray:
    """A normalised float32 batch ``(B, 3, size, size)``."""
    arrays = [
        np.asarray(load_rgb(im).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
        for im in images
    ]
    batch = (np.stack(arrays) - np.array(mean, np.float32)) / np.array(std, np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


class FeatureCache:
    """Per-image fp16 feature grids under ``root/<hash of key>/``."""

    def __init__(self, root: Path, key: dict[str, Any]) -> None:
        text = json.dumps(key, sort_keys=True)
        self.folder = root / hashlib.sha256(text.encode()).hexdigest()[:16]
        self.key = key

    def _path(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.safetensors"

    def get(self, digest: str) -> np.ndarray | None:
        """The cached ``(h, w, D)`` fp16 grid of the image with content hash ``digest``;
        None when absent or damaged (a damaged entry is recomputed, never trusted)."""
        path = self._path(digest)
        if not path.is_file():
            return None
        try:
            grid = fsutil.load_safetensors(path, framework="numpy").get(TENSOR)
        except (DamagedFileError, OSError):
            return None
        ok = isinstance(grid, np.ndarray) and grid.ndim == 3 and grid.dtype == np.float16
        return grid if ok else None

    def put(self, digest: str, grid: np.ndarray) -> None:
        """Store one image's grid atomically."""
        from safetensors.numpy import save

        if not (self.folder / KEY_FILE).is_file():
            fsutil.write_json(self.folder / KEY_FILE, self.key)
        grid = np.ascontiguousarray(grid, dtype=np.float16)  # safetensors writes raw buffers
        fsutil.write_bytes(self._path(digest), save({TENSOR: grid}))


def image_digest(image: ImageInput) -> str | None:
    """Content hash of an image file (None for in-memory images, which are not cached)."""
    if isinstance(image, Image.Image):
        return None
    try:
        return fsutil.sha256_file(image)
    except OSError as err:
        raise unreadable_image(image, err) from None
