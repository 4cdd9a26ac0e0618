"""The discoverer protocol: a small, sklearn-style base class every backend subclasses.

A backend supplies features (:meth:`Discoverer._load` and :meth:`Discoverer._embed`) and
optionally its own grouping (:meth:`Discoverer._grouper`); this class does the rest:
batched, cached feature extraction with progress, the shared 3-level hierarchy, coding
of new images, and saving/loading as ``config.json`` + ``centroids.safetensors``.

Contract (checked by :func:`creaturekit.discovery.conformance.check_discoverer`):
``__init__`` only stores options; ``fit(images)`` returns ``self`` and sets ``hierarchy_``,
``coding_``, ``report_``, ``grid_`` and ``timing_``; ``encode(images)`` codes new images;
using an unfitted discoverer raises :class:`NotFittedError`; the same seed gives the
same result.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from creaturekit import fsutil
from creaturekit.discovery import hierarchy
from creaturekit.discovery.errors import DiscoveryDataError, DiscoveryResultError, NotFittedError
from creaturekit.discovery.features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FeatureCache,
    ImageInput,
    image_digest,
    to_pixels,
)
from creaturekit.discovery.grouping import Grouper, KMeansGrouper
from creaturekit.errors import ConfigError
from creaturekit.progress import track
from creaturekit.version import __version__

CONFIG_FILE = "config.json"
CENTROIDS_FILE = "centroids.safetensors"


class Discoverer:
    """Base class of backends: subclasses set ``name`` and implement ``_load``/``_embed``."""

    name: ClassVar[str] = ""
    pixel_mean: ClassVar[tuple[float, float, float]] = IMAGENET_MEAN
    pixel_std: ClassVar[tuple[float, float, float]] = IMAGENET_STD

    def __init__(
        self,
        model: str = "",
        *,
        parts: int = 8,
        subconcepts: int = 256,
        bg_subconcepts: int = 256,
        image_size: int = 224,
        batch_size: int = 32,
        seed: int = 42,
        position_weight: float = 1.0,
        device: str = "auto",
    ) -> None:
        self.model = model
        self.parts = parts
        self.subconcepts = subconcepts
        self.bg_subconcepts = bg_subconcepts
        self.image_size = image_size
        self.batch_size = batch_size
        self.seed = seed
        self.position_weight = position_weight
        self.device = device

    # -- what a backend implements -------------------------------------------------------
    def _load(self) -> None:
        """Load the feature backbone (heavy imports belong here, not at module level)."""
        raise NotImplementedError

    def _embed(self, pixels: Any) -> Any:
        """Patch features ``(B, h, w, D)`` (a torch tensor) of a normalised batch."""
        raise NotImplementedError

    def feature_key(self) -> dict[str, Any]:
        """Everything that determines the features (the cache key)."""
        return {"backend": self.name, "model": self.model, "image_size": self.image_size}

    def appearance_dims(self) -> int:
        """How many trailing feature channels are appearance (e.g. colour) that the part
        level leaves out (parts are what a region is, not its colour); 0 by default."""
        return 0

    def _grouper(self) -> Grouper:
        """How the part and sub-concept levels group vectors (k-means by default)."""
        return KMeansGrouper()

    # -- options -------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's options (its config)."""
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """Options as passed to ``__init__``."""
        return {p: getattr(self, p) for p in self.param_names()}

    def _check_params(self) -> None:
        for key in ("parts", "subconcepts", "bg_subconcepts", "image_size", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}.")

    # -- features ------------------------------------------------------------------------
    def load_backbone(self) -> None:
        """Load the feature backbone now (extraction does it when first needed); missing
        weights raise :class:`~creaturekit.errors.ModelNotFoundError` here."""
        if getattr(self, "_backbone_loaded", False):
            return
        from creaturekit.models import select_device

        self._device = select_device(self.device)
        self._load()
        self._backbone_loaded = True

    def extract(self, images: Sequence[ImageInput], cache_dir: Path | None = None) -> np.ndarray:
        """Patch features of ``images`` as one fp16 array ``(N, h*w, D)``; sets ``grid_``."""
        cache = FeatureCache(cache_dir, self.feature_key()) if cache_dir is not None else None
        digests = [image_digest(im) if cache else None for im in images]
        grids: list[np.ndarray | None] = [cache.get(d) if cache and d else None for d in digests]
        cached = [i for i, g in enumerate(grids) if g is not None]
        self._compute(images, grids, [i for i, g in enumerate(grids) if g is None], cache, digests)
        if cached and len({g.shape for g in grids if g is not None}) > 1:
            # a cache entry of another shape is stale or damaged: recompute what came from it
            self._compute(images, grids, cached, cache, digests)
        shapes = {g.shape for g in grids if g is not None}
        if len(shapes) != 1:
            raise DiscoveryDataError("No images to extract features from.")
        h, w, d = shapes.pop()
        self.grid_ = (h, w)
        return np.stack([g.reshape(h * w, d) for g in grids if g is not None])

    def _compute(
        self,
        images: Sequence[ImageInput],
        grids: list[np.ndarray | None],
        todo: list[int],
        cache: FeatureCache | None,
        digests: list[str | None],
    ) -> None:
        """Fill ``grids[i]`` for every ``i`` in ``todo`` with the backbone (and cache them)."""
        import torch

        batches = [todo[s : s + self.batch_size] for s in range(0, len(todo), self.batch_size)]
        if todo:
            self.load_backbone()
        for batch in track(batches, "Extracting features", total=len(batches)):
            pixels = to_pixels(
                [images[i] for i in batch], self.image_size, self.pixel_mean, self.pixel_std
            )
            with torch.inference_mode():
                out = self._embed(torch.from_numpy(pixels).to(self._device))
            out = out.float().cpu().numpy().astype(np.float16)
            for i, grid in zip(batch, out, strict=True):
                grids[i] = grid
                digest = digests[i]
                if cache is not None and digest is not None:
                    cache.put(digest, grid)

    # -- the estimator -------------------------------------------------------------------
    def fit(self, images: Sequence[ImageInput], cache_dir: Path | None = None) -> Discoverer:
        """Discover parts and sub-concepts in ``images``; returns ``self``."""
        self._check_params()
        if len(images) < 2:
            raise DiscoveryDataError(
                f"Discovery needs at least 2 images; got {len(images)}. Add images with "
                "`creaturekit init DIR --images SRC --force`."
            )
        start = time.perf_counter()
        feats = self.extract(images, cache_dir)
        extracted = time.perf_counter()
        params = hierarchy.HierarchyParams(
            parts=self.parts,
            subconcepts=self.subconcepts,
            bg_subconcepts=self.bg_subconcepts,
            seed=self.seed,
            position_weight=self.position_weight,
            appearance_dims=self.appearance_dims(),
        )
        self.hierarchy_, self.coding_, self.report_ = hierarchy.fit(
            feats, self.grid_, params, self._grouper()
        )
        self.timing_ = {
            "features_s": round(extracted - start, 3),
            "clustering_s": round(time.perf_counter() - extracted, 3),
            "images": len(images),
        }
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "hierarchy_"):
            raise NotFittedError(
                f"This {self.name or type(self).__name__} discoverer is not fitted; call fit() "
                "or load a saved one first."
            )

    def encode(self, images: Sequence[ImageInput]) -> hierarchy.Coding:
        """Code new images with the fitted centroids: masks, sub-concept codes, part features."""
        self._check_fitted()
        grid = self.grid_
        feats = self.extract(images)
        if self.grid_ != grid:
            self.grid_ = grid
            raise DiscoveryDataError("The backbone gave a different patch grid than when fitted.")
        return hierarchy.encode(self.hierarchy_, feats, grid)

    # -- persistence ---------------------------------------------------------------------
    def save(self, folder: str | Path, metadata: dict[str, str] | None = None) -> None:
        """Write ``config.json`` (options) and ``centroids.safetensors`` (state) to ``folder``."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "backend": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "creaturekit_version": __version__,
            "params": self.get_params(),
            "grid": list(self.grid_),
        }
        fsutil.write_json(folder / CONFIG_FILE, config)
        fsutil.save_safetensors(self.hierarchy_.tensors(), folder / CENTROIDS_FILE, metadata)

    @classmethod
    def load(cls, folder: str | Path) -> Discoverer:
        """A fitted discoverer from a folder written by :meth:`save`."""
        folder = Path(folder)
        try:
            config = fsutil.read_json(folder / CONFIG_FILE)
            tensors = fsutil.load_safetensors(folder / CENTROIDS_FILE, framework="numpy")
        except FileNotFoundError as err:
            raise DiscoveryResultError(
                f"{folder} does not hold a saved discoverer (no {Path(err.filename).name}); "
                "run `creaturekit discover` first."
            ) from None
        known = set(cls.param_names())
        try:
            obj = cls(**{k: v for k, v in config["params"].items() if k in known})
            obj.grid_ = (int(config["grid"][0]), int(config["grid"][1]))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise fsutil.damaged(folder / CONFIG_FILE, f"no valid {err}") from None
        try:
            obj.hierarchy_ = hierarchy.Hierarchy.from_tensors(tensors)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise fsutil.damaged(folder / CENTROIDS_FILE, f"no tensor {err}") from None
        return obj
