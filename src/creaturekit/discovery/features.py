"""Image preprocessing and the on-disk feature cache shared by every backend.

Images are squashed to a square ``image_size`` (no crop, so patch masks cover the
whole picture) and normalised. Features are cached as one fp16 safetensors file per
image content hash (a one-image shard, written atomically), under a folder named by a
hash of the backbone and preprocessing, so a rerun (after an interruption, or after
adding images) only computes what is missing, and processes extracting different images
never write the same file. A :class:`FeatureSet` reads cached features a few images
at a time, so nothing holds every image's features in memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from creaturekit import fsutil
from creaturekit.discovery.errors import DiscoveryDataError
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

    def has(self, digest: str) -> bool:
        """Whether an entry for ``digest`` exists (it is checked when read)."""
        return self._path(digest).is_file()

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


class FeatureSet:
    """The cached patch features ``(N, h*w, D)`` of ``N`` images, read when indexed.

    ``features[rows]`` (an integer array) loads those images' fp16 features; an entry
    that is damaged or of another shape is recomputed with ``recompute(rows) -> grids``
    (and stored again by it).
    """

    def __init__(
        self,
        cache: FeatureCache,
        digests: Sequence[str],
        recompute: Callable[[list[int]], list[np.ndarray]],
    ) -> None:
        self.cache, self.digests, self._recompute = cache, list(digests), recompute
        self._shape: tuple[int, ...] | None = None  # (h, w, D) of every entry
        if not self.digests:
            raise DiscoveryDataError("No images to extract features from.")
        self._shape = self._grids([0])[0].shape
        h, w, d = self._shape
        self.grid = (h, w)
        self.shape = (len(self.digests), h * w, d)

    def __len__(self) -> int:
        return len(self.digests)

    def _grids(self, rows: Sequence[int]) -> list[np.ndarray]:
        found = [self.cache.get(self.digests[i]) for i in rows]
        grids = [g for g in found if g is not None and self._shape in (None, g.shape)]
        if len(grids) == len(found):
            return grids
        bad = [j for j, g in enumerate(found) if g is None or self._shape not in (None, g.shape)]
        for j, grid in zip(bad, self._recompute([rows[j] for j in bad]), strict=True):
            if self._shape not in (None, grid.shape):
                raise DiscoveryDataError(
                    f"The feature cache in {self.cache.folder} holds features of another "
                    "shape than the backbone gives now; delete that folder and run again."
                )
            found[j] = grid
        return [g for g in found if g is not None]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), *self.shape[1:]), np.float16)
        for j, grid in enumerate(self._grids([int(i) for i in rows])):
            out[j] = grid.reshape(self.shape[1:])
        return out
