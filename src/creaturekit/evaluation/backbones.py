"""Image backbones of ``eval``'s image metrics: one global embedding per image.

A backbone reference is one of

* ``"discovery"``: the project's own fitted discoverer; the embedding is the mean of an
  image's patch features (works offline whenever discovery ran);
* ``"inception"``: the standard FID Inception-v3 (torch-fidelity's weights, 2048-d pool
  features), or a local file of those weights (``.pth``), loaded tensors-only;
* anything else: a hub id or local folder of a Hugging Face image model, loaded with
  ``AutoModel`` + ``AutoImageProcessor`` through :func:`creaturekit.models.load_pretrained`.
  CLIP models give their projected image features, others their pooled output (DINOv2:
  the CLS token) or the mean of their tokens.

Every backbone is loaded when it is built, so missing weights are reported at once.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from creaturekit.discovery.features import ImageInput, load_rgb
from creaturekit.errors import ModelNotFoundError
from creaturekit.progress import track
from creaturekit.project import Project

DISCOVERY = "discovery"
INCEPTION = "inception"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's download
BATCH = 32


class Backbone:
    """Global image embeddings ``(N, D)`` float32; subclasses implement :meth:`_batch`."""

    name: str = ""

    def embed(self, images: Sequence[ImageInput], description: str) -> np.ndarray:
        """Embeddings of ``images`` in batches, with a progress bar."""
        import torch

        batches = [images[s : s + BATCH] for s in range(0, len(images), BATCH)]
        out = []
        for batch in track(batches, description, total=len(batches)):
            with torch.inference_mode():
                out.append(self._batch([load_rgb(im) for im in batch]))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

    def _batch(self, images: list[Image.Image]) -> np.ndarray:
        raise NotImplementedError


class DiscoveryBackbone(Backbone):
    """The project's fitted discoverer: mean of an image's patch features."""

    def __init__(self, discovery_dir: Path) -> None:
        from creaturekit.discovery.discover import load_discoverer
        from creaturekit.discovery.result import FEATURES_DIR

        self.name = DISCOVERY
        self.discoverer = load_discoverer(discovery_dir)
        self.discoverer.load_backbone()  # missing weights fail before any generation
        self.cache_dir = discovery_dir / FEATURES_DIR

    def embed(self, images: Sequence[ImageInput], description: str) -> np.ndarray:
        """Mean patch features; files hit the discovery feature cache (the discoverer's bar)."""
        feats = self.discoverer.extract(images, cache_dir=self.cache_dir)
        return feats.astype(np.float32).mean(axis=1)


class HFBackbone(Backbone):
    """A Hugging Face image model (DINOv2, CLIP, ViT...) with its own image processor."""

    def __init__(self, ref: str, base: Path | None, what: str, flag: str) -> None:
        from creaturekit.models import (
            check_weights_available,
            load_pretrained,
            resolve_model,
            select_device,
        )

        model = resolve_model(ref, base, flag)
        check_weights_available(model, what, flag)
        from transformers import AutoImageProcessor, AutoModel

        self.name = model.location
        self.net = load_pretrained(AutoModel.from_pretrained, model, what, flag).eval()
        self.processor = load_pretrained(
            AutoImageProcessor.from_pretrained, model, f"image processor of the {what}", flag
        )
        self.device = select_device()
        self.net.to(self.device)

    def _batch(self, images: list[Image.Image]) -> np.ndarray:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device)
        if hasattr(self.net, "get_image_features"):
            feats = pooled(self.net.get_image_features(pixel_values=pixels))
        else:
            out = self.net(pixel_values=pixels)
            pool = getattr(out, "pooler_output", None)
            feats = pool if pool is not None else out.last_hidden_state.mean(dim=1)
        return feats.reshape(len(images), -1).float().cpu().numpy()


class InceptionBackbone(Backbone):
    """FID's Inception-v3 (torch-fidelity), 2048-d pool features of uint8 299x299 images."""

    SIZE = 299

    def __init__(self, weights: str | None, what: str, flag: str) -> None:
        from creaturekit.models import select_device

        self.name = weights or INCEPTION
        self.device = select_device()
        self.net = _load_inception(weights, what, flag).to(self.device)

    def _batch(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        side = (self.SIZE, self.SIZE)
        arrays = [np.asarray(im.resize(side, Image.Resampling.BILINEAR)) for im in images]
        pixels = torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy())
        return self.net(pixels.to(self.device)).reshape(len(images), -1).float().cpu().numpy()


def pooled(output: Any) -> Any:
    """The feature tensor of a ``get_*_features`` call (a tensor, or an output's pooler)."""
    return output if hasattr(output, "shape") else output.pooler_output


@contextlib.contextmanager
def _tensors_only() -> Iterator[None]:
    """Within the block every ``torch.load`` reads tensors only (never runs pickled code)."""
    key = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    old = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _inception_fix(flag: str) -> str:
    return (
        f"download {INCEPTION_FILE} (torch-fidelity's releases) and pass it with {flag} PATH, "
        f"or choose {flag} {DISCOVERY} or an image model."
    )


def _inception_weights(weights: str | None, what: str, flag: str) -> Path:
    """Where the Inception weights are (``weights``, a file, or torch-fidelity's download
    cache); refused at once when they are missing and cannot be downloaded."""
    import torch

    from creaturekit.models import hub_offline

    path = Path(weights).expanduser() if weights else None
    looked = path or Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if path is None and hub_offline() and not looked.is_file():
        raise ModelNotFoundError(
            f"Could not find the Inception weights of the {what} at {looked} and the hub is "
            f"disabled (HF_HUB_OFFLINE=1); {_inception_fix(flag)}"
        )
    if path is not None and not path.is_file():
        raise ModelNotFoundError(
            f"The Inception weights file {path} does not exist; {_inception_fix(flag)}"
        )
    return looked


def _load_inception(weights: str | None, what: str, flag: str) -> Any:
    """torch-fidelity's Inception from ``weights`` (a file) or its download cache."""
    looked = _inception_weights(weights, what, flag)
    from torchmetrics.image.fid import NoTrainInceptionV3

    path = Path(weights).expanduser() if weights else None
    fix = _inception_fix(flag)
    try:
        with _tensors_only():
            return NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=["2048"],
                feature_extractor_weights_path=str(path) if path else None,
            )
    except pickle.UnpicklingError as err:
        raise ModelNotFoundError(
            f"Could not load the Inception weights of the {what} from {looked} (it holds more "
            f"than tensors, and pickled code is never run); {fix}"
        ) from err
    except (OSError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ModelNotFoundError(
            f"Could not load the Inception weights of the {what} from {looked} ({reason}); {fix}"
        ) from err


def check_backbone(ref: str, project: Project, what: str, flag: str) -> None:
    """Refuse at once the backbone ``ref`` when its weights are missing, before any backbone
    is loaded (the project's own discoverer is loaded, and checked, first)."""
    if ref == DISCOVERY:
        return
    if ref == INCEPTION or Path(ref).suffix in (".pth", ".pt"):
        _inception_weights(None if ref == INCEPTION else ref, what, flag)
        return
    from creaturekit.models import check_weights_available, resolve_model

    check_weights_available(resolve_model(ref, project.root, flag), what, flag)


def load_backbone(ref: str, project: Project, what: str, flag: str) -> Backbone:
    """The backbone ``ref`` names (see the module docstring), loaded now."""
    if ref == DISCOVERY:
        return DiscoveryBackbone(project.discovery_dir)
    if ref == INCEPTION:
        return InceptionBackbone(None, what, flag)
    if Path(ref).suffix in (".pth", ".pt"):
        return InceptionBackbone(ref, what, flag)
    return HFBackbone(ref, project.root, what, flag)
