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
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from creaturekit import fsutil
from creaturekit.discovery import hierarchy
from creaturekit.discovery.checkpoint import checkpoint_key, load_learnt, save_learnt
from creaturekit.discovery.errors import DiscoveryDataError, DiscoveryResultError, NotFittedError
from creaturekit.discovery.features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FeatureCache,
    FeatureSet,
    ImageInput,
    image_digest,
    to_pixels,
)
from creaturekit.discovery.grouping import Grouper, KMeansGrouper
from creaturekit.discovery.scale import Scale
from creaturekit.errors import ConfigError
from creaturekit.progress import track
from creaturekit.version import __version__

CONFIG_FILE = "config.json"
CENTROIDS_FILE = "centroids.safetensors"


class Discoverer:
    """Base class of backends: subclasses set ``name`` and implement ``_load``/``_embed``."""

    name: ClassVar[str] = ""
    default_model: ClassVar[str] = ""  # the backbone used when no model is given
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
        self.model = model or self.default_model
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
        """How the part and sub-concept levels group vectors (k-means by default, on the
        engine ``fit``'s ``scale`` names)."""
        return KMeansGrouper(engine=getattr(self, "scale_", Scale()).kmeans)

    # -- options -------------------------------------------------------------------------
    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Every option with its default: the keyword parameters of this class's constructor
        and of every class it extends, so a backend declares only the options it adds
        (``def __init__(self, model="", *, extra=1, **options)``)."""
        skip = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        found: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if klass is object or init is None:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind not in skip:
                    found[p.name] = p.default
        return found | {"model": cls.default_model}

    @classmethod
    def param_names(cls) -> list[str]:
        """The options (the discoverer's config), see :meth:`option_defaults`."""
        return list(cls.option_defaults())

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
        feats = self.features(images, cache_dir)
        return feats if isinstance(feats, np.ndarray) else feats[np.arange(len(feats))]

    def features(
        self, images: Sequence[ImageInput], cache_dir: Path | None = None
    ) -> np.ndarray | FeatureSet:
        """Patch features of ``images``; sets ``grid_``.

        With a ``cache_dir`` and image files, what is not cached yet is extracted and
        cached, and a :class:`FeatureSet` reads the features back a few images at a time
        (memory does not grow with the number of images); otherwise one fp16 array
        ``(N, h*w, D)`` in memory.
        """
        if not images:
            raise DiscoveryDataError("No images to extract features from.")
        digests = [image_digest(im) for im in images] if cache_dir is not None else []
        if cache_dir is None or None in digests:
            grids: list[np.ndarray] = [np.zeros(0)] * len(images)
            self._compute(images, list(range(len(images))), grids.__setitem__)
            h, w, d = grids[0].shape
            self.grid_ = (h, w)
            return np.stack([g.reshape(h * w, d) for g in grids])
        cache = FeatureCache(cache_dir, self.feature_key())
        files = [str(d) for d in digests]
        self._cache_missing(images, cache, files)

        def recompute(rows: list[int]) -> list[np.ndarray]:
            fresh: dict[int, np.ndarray] = {}

            def keep(i: int, grid: np.ndarray) -> None:
                cache.put(files[i], grid)
                fresh[i] = grid

            self._compute(images, rows, keep)
            return [fresh[i] for i in rows]

        feats = FeatureSet(cache, files, recompute)
        self.grid_ = feats.grid
        return feats

    def cache_features(
        self, images: Sequence[Path], cache_dir: Path, *, rank: int = 0, processes: int = 1
    ) -> int:
        """Extract and cache the features of the image files not cached yet, or with
        ``processes`` > 1 of every ``processes``-th of them from ``rank`` (this process's
        share); returns how many were extracted."""
        cache = FeatureCache(cache_dir, self.feature_key())
        files = [image_digest(path) or "" for path in images]
        return self._cache_missing(images, cache, files, rank, processes)

    def _cache_missing(
        self,
        images: Sequence[ImageInput],
        cache: FeatureCache,
        files: list[str],
        rank: int = 0,
        processes: int = 1,
    ) -> int:
        """Extract and cache what the cache lacks (this process's share of it)."""
        todo = [i for i, d in enumerate(files) if not cache.has(d)][rank::processes]
        self._compute(images, todo, lambda i, grid: cache.put(files[i], grid))
        return len(todo)

    def _compute(
        self,
        images: Sequence[ImageInput],
        todo: list[int],
        keep: Callable[[int, np.ndarray], object],
    ) -> None:
        """Run the backbone on ``images[i]`` for every ``i`` in ``todo``, a batch at a time,
        and hand each image's fp16 grid ``(h, w, D)`` to ``keep(i, grid)``."""
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
                keep(i, grid)

    # -- the estimator -------------------------------------------------------------------
    def fit(
        self,
        images: Sequence[ImageInput],
        cache_dir: Path | None = None,
        *,
        scale: Scale | None = None,
        checkpoint: Path | None = None,
        resume: bool = False,
    ) -> Discoverer:
        """Discover parts and sub-concepts in ``images``; returns ``self``.

        With a ``cache_dir`` features go to disk (an interrupted extraction continues
        where it stopped) and memory stays bounded by ``scale`` (sample sizes; also the
        k-means engine), not by the number of images. With a ``checkpoint`` file the
        learnt centroids are kept there before every image is coded, and ``resume``
        starts from it when it was learnt from the same images and settings.
        """
        self._check_params()
        self.scale_ = (scale or Scale()).check()
        if len(images) < 2:
            raise DiscoveryDataError(
                f"Discovery needs at least 2 images; got {len(images)}. Add images with "
                "`creaturekit init DIR --images SRC --force`."
            )
        start = time.perf_counter()
        feats = self.features(images, cache_dir)
        extracted = time.perf_counter()
        params = hierarchy.HierarchyParams(
            parts=self.parts,
            subconcepts=self.subconcepts,
            bg_subconcepts=self.bg_subconcepts,
            seed=self.seed,
            position_weight=self.position_weight,
            appearance_dims=self.appearance_dims(),
            sample_images=self.scale_.sample_images,
            subconcept_points=self.scale_.subconcept_points,
        )
        grouper = self._grouper()
        key = None
        if checkpoint is not None and isinstance(feats, FeatureSet):
            settings = {"features": self.feature_key(), "params": self.get_params()}
            settings["scale"] = asdict(self.scale_)
            key = checkpoint_key(settings, feats.digests)
        learnt = load_learnt(checkpoint, key) if resume and checkpoint and key else None
        resumed = learnt is not None
        if learnt is None:
            learnt = hierarchy.learn(feats, self.grid_, params, grouper)
            if checkpoint is not None and key is not None:
                save_learnt(checkpoint, key, learnt)
        self.hierarchy_ = learnt.hierarchy
        self.coding_, self.report_ = hierarchy.code_all(
            feats, self.grid_, learnt, params.chunk_images
        )
        self.report_.scale["grouping"] = getattr(grouper, "engine", type(grouper).__name__)
        self.timing_ = {
            "features_s": round(extracted - start, 3),
            "clustering_s": round(time.perf_counter() - extracted, 3),
            "images": len(images),
            "resumed": resumed,
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
        feats = self._fitted_features(images, None)
        assert isinstance(feats, np.ndarray)  # no cache: in memory
        return hierarchy.encode(self.hierarchy_, feats, self.grid_)

    def code(
        self, images: Sequence[ImageInput], cache_dir: Path | None = None
    ) -> hierarchy.ImageCodes:
        """Code many new images with the fitted centroids in one streaming pass: masks and
        sub-concept codes (no part features); with a ``cache_dir``, in bounded memory."""
        feats = self._fitted_features(images, cache_dir)
        return hierarchy.code_images(feats, self.grid_, self.hierarchy_)

    def _fitted_features(
        self, images: Sequence[ImageInput], cache_dir: Path | None
    ) -> np.ndarray | FeatureSet:
        """Features of new images for the fitted discoverer (same patch grid)."""
        self._check_fitted()
        grid = self.grid_
        feats = self.features(images, cache_dir)
        if self.grid_ != grid:
            self.grid_ = grid
            raise DiscoveryDataError("The backbone gave a different patch grid than when fitted.")
        return feats

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
