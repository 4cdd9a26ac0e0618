"""clip-kmeans with a tiny randomly initialised open_clip tower and a local checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from creaturekit_clip import ClipKMeans
from PIL import Image

from creaturekit.discovery.conformance import check_discoverer
from creaturekit.errors import ModelNotFoundError

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    import open_clip

    folder = tmp_path_factory.mktemp("clip-config")
    (folder / "ck-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder)
    return "ck-tiny-clip"


def images(folder: Path, n: int = 6) -> list[Path]:
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        a = np.full((48, 48, 3), rng.integers(0, 256, 3), np.uint8)
        a[12:36, 12:36] = rng.integers(0, 256, 3)
        out.append(folder / f"{i}.png")
        Image.fromarray(a).save(out[-1])
    return out


def test_conforms_with_random_tower(tiny_clip: str, tmp_path: Path) -> None:
    def make(seed: int) -> ClipKMeans:
        return ClipKMeans(
            tiny_clip, pretrained="random", parts=2, subconcepts=2, bg_subconcepts=2,
            image_size=32, seed=seed,
        )  # fmt: skip

    assert check_discoverer(make, images(tmp_path / "img"), tmp_path).grid_ == (4, 4)


def test_local_checkpoint_and_missing_one(tiny_clip: str, tmp_path: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    model = open_clip.create_model(tiny_clip)
    save_file(model.state_dict(), str(tmp_path / "tiny.safetensors"))
    clip = ClipKMeans(tiny_clip, pretrained=str(tmp_path / "tiny.safetensors"), image_size=32)
    assert clip.extract(images(tmp_path / "img", 2)).shape == (2, 16, 32)
    with pytest.raises(ModelNotFoundError, match="--option pretrained=PATH"):
        ClipKMeans(tiny_clip, pretrained=str(tmp_path / "nope.pt"), image_size=32).extract(
            images(tmp_path / "img", 2)
        )
