"""The oracle: a small CNN that reads each part's variant and the scene off a toy image.

It is the independent judge of the toy world (of the tiny base model and of mixes).
It was trained on freshly drawn creatures whose part variants are drawn independently
(see :mod:`tools.toy.train_oracle`); its weights ship with the package as
safetensors, next to a JSON file with its hyper-parameters and measured accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from creaturekit import fsutil
from creaturekit.errors import ModelNotFoundError
from creaturekit.toy.world import N_VARIANTS, PARTS, SCENES

ORACLE_SIZE = 64
"""Images of any size are resized to this side before the oracle reads them."""
COLUMNS: tuple[str, ...] = (*PARTS, "bg")
"""Columns of a prediction: one per part (variant id) and the scene id."""
NOT_VISIBLE = -1
"""The variant id reported for a part that is not visible."""
WEIGHTS_NAME = "oracle.safetensors"
CONFIG_NAME = "oracle.json"


def default_dir() -> Path:
    """Where the shipped oracle lives (inside the installed package)."""
    return Path(str(files("creaturekit") / "assets" / "toy"))


class OracleNet(nn.Module):
    """Conv features at 1/2 resolution, a part-segmentation head, and per-part classifiers.

    Deep (dilated, 1/4 resolution) features are upsampled and joined to shallow ones.
    Each part's classifier reads the features averaged over where the segmentation head
    puts that part (plus how much of it there is), so it learns the colour and shape of
    the right region. Part classifiers have ``N_VARIANTS + 1`` classes, the last meaning
    "not visible"; the background's classifier predicts the scene.
    """

    def __init__(self, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
            conv = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)
            return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.shallow = nn.Sequential(*block(3, w, stride=2), *block(w, w))
        self.deep = nn.Sequential(
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            *block(2 * w, 2 * w, dilation=2),
            *block(2 * w, 2 * w, dilation=4),
            nn.Upsample(scale_factor=2, mode="nearest"),
        )
        self.segment = nn.Conv2d(3 * w, len(PARTS) + 1, 1)
        self.classify = nn.ModuleList(
            nn.Sequential(nn.Linear(3 * w + 1, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n))
            for n in (len(SCENES), *[N_VARIANTS + 1] * len(PARTS))
        )

    def forward(
        self, x: torch.Tensor, regions: torch.Tensor | None = None, forcing: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits: parts (B, P, N_VARIANTS + 1), scene (B, S), segmentation (B, P + 1, h, w).

        In training, the true part ``regions`` (B, P + 1, h, w) are mixed into the
        predicted ones with weight ``forcing`` (teacher forcing, so the classifiers learn
        before the segmentation does).
        """
        shallow = self.shallow(x)
        f = torch.cat([shallow, self.deep(shallow)], dim=1)
        seg = self.segment(f)
        weight = seg.softmax(dim=1)
        if regions is not None:
            weight = forcing * regions + (1.0 - forcing) * weight
        mass = weight.sum(dim=(2, 3))
        pooled = torch.einsum("bkhw,bchw->bkc", weight, f) / (mass[..., None] + 1e-3)
        share = torch.log(mass / (seg.shape[2] * seg.shape[3]) + 1e-4)
        inputs = torch.cat([pooled, share[..., None]], dim=2)
        logits = [head(inputs[:, k]) for k, head in enumerate(self.classify)]
        return torch.stack(logits[1:], dim=1), logits[0], seg


def to_tensor(images: Sequence[Image.Image | np.ndarray] | np.ndarray) -> torch.Tensor:
    """Images (PIL or HxWx3 uint8) as a normalised (N, 3, ORACLE_SIZE, ORACLE_SIZE) batch."""
    arrays = []
    for im in images:
        pil = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im))
        pil = pil.convert("RGB")
        if pil.size != (ORACLE_SIZE, ORACLE_SIZE):
            pil = pil.resize((ORACLE_SIZE, ORACLE_SIZE), Image.Resampling.BOX)
        arrays.append(np.asarray(pil))
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return (batch / 255.0 - 0.5) / 0.25


@dataclass
class Oracle:
    """A loaded oracle: the network and what it was trained and measured with."""

    net: OracleNet
    config: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict(
        self, images: Sequence[Image.Image | np.ndarray] | np.ndarray, batch_size: int = 256
    ) -> np.ndarray:
        """(N, len(COLUMNS)) ints: each part's variant id (or NOT_VISIBLE) and the scene id."""
        self.net.eval()
        rows = []
        for start in range(0, len(images), batch_size):
            parts, scene, _ = self.net(to_tensor(images[start : start + batch_size]))
            ids = parts.argmax(dim=2)
            ids = torch.where(ids == N_VARIANTS, NOT_VISIBLE, ids)
            rows.append(torch.cat([ids, scene.argmax(dim=1, keepdim=True)], dim=1).numpy())
        return np.concatenate(rows) if rows else np.zeros((0, len(COLUMNS)), dtype=np.int64)


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Share of exact matches per column of two (N, len(COLUMNS)) prediction arrays."""
    return {c: float(np.mean(predicted[:, i] == truth[:, i])) for i, c in enumerate(COLUMNS)}


def load_oracle(folder: str | Path | None = None) -> Oracle:
    """Load the oracle from ``folder`` (default: the one shipped with creaturekit)."""
    folder = Path(folder) if folder is not None else default_dir()
    weights, config_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not weights.is_file() or not config_path.is_file():
        raise ModelNotFoundError(
            f"No toy oracle in {folder}; reinstall creaturekit, or train one in a source "
            "checkout with `python -m tools.toy.train_oracle --out DIR`."
        )
    config = fsutil.read_json(config_path)
    try:
        net = OracleNet(**config["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise fsutil.damaged(config_path, f"no valid model settings: {err}") from None
    try:
        net.load_state_dict(fsutil.load_safetensors(weights))
    except RuntimeError:
        raise fsutil.damaged(weights, "weights of another shape than its config gives") from None
    net.eval()
    return Oracle(net=net, config=config)
