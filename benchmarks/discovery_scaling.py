"""Discovery at scale: peak memory, time and disk use vs number of images.

    python benchmarks/discovery_scaling.py 1000 10000 100000       # images per run
    python benchmarks/discovery_scaling.py --workdir /big/disk 100000
    python benchmarks/discovery_scaling.py --features effnet-kmeans 64   # features/s

Each size runs in a fresh process, so its peak memory (max RSS) is its own. The images
are real files (tiny PNGs, one colour each, which encodes the image's number) and go
through the same code path as a real discovery: ``Discoverer.fit`` with a feature cache,
where a fake backbone (:class:`SyntheticBackbone`, plugged where the network goes) gives
DINOv2-base-sized features (16x16 patches x 768 dims) that mimic a creature data set:
border patches from background centres, inner patches from 8 part centres with 4
variants each, plus noise. Default settings: M = 8, K = 256, background K = 256.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from creaturekit.discovery.base import Discoverer

PATCHES, DIMS, SIDE = 256, 768, 16


class SyntheticBackbone(Discoverer):
    """A "backbone" whose features are synthetic: image ``i`` (its colour encodes ``i``)
    always gives the same ``(16, 16, 768)`` grid."""

    name = "synthetic"

    def _load(self) -> None:
        rng = np.random.default_rng(0)
        self._bg = rng.normal(size=(4, DIMS)).astype(np.float32)
        self._parts = rng.normal(size=(8, 4, DIMS)).astype(np.float32)  # 4 variants per part
        y, x = np.divmod(np.arange(PATCHES), SIDE)
        self._inner = ((y >= 4) & (y < 12) & (x >= 4) & (x < 12))[:, None]
        self._part_of = (((y - 4) // 4) * 4 + (x - 4) // 2).clip(0, 7)
        self._y = y

    def _embed(self, pixels: Any) -> Any:
        import torch

        mean = torch.tensor(self.pixel_mean)[:, None, None]
        std = torch.tensor(self.pixel_std)[:, None, None]
        rgb = torch.round((pixels * std + mean) * 255)[:, :, 0, 0].long().numpy()
        out = np.empty((len(rgb), PATCHES, DIMS), np.float32)
        for j, (r, g, b) in enumerate(rgb):
            i = int(r) * 65536 + int(g) * 256 + int(b)
            rng = np.random.default_rng(i)
            variant = rng.integers(0, 4, 8)[self._part_of]
            rows = np.where(self._inner, self._parts[self._part_of, variant],
                            self._bg[(i + self._y // 8) % 4])  # fmt: skip
            out[j] = rows + 0.5 * rng.standard_normal((PATCHES, DIMS), np.float32)
        return torch.from_numpy(out).reshape(len(out), SIDE, SIDE, DIMS)


def write_images(folder: Path, n: int) -> list[Path]:
    """``n`` 8x8 one-colour PNGs; image ``i``'s colour is ``i`` in base 256."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:07d}.png"
        if not path.is_file():
            Image.new("RGB", (8, 8), (i >> 16, (i >> 8) & 255, i & 255)).save(path)
        paths.append(path)
    return paths


def disk_use(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_one(n: int, workdir: Path) -> dict[str, Any]:
    from creaturekit.progress import quiet

    paths = write_images(workdir / "images", n)
    cache = Path(tempfile.mkdtemp(prefix="features-", dir=workdir))  # ours alone to remove
    disc = SyntheticBackbone(image_size=8, batch_size=64)
    start = time.perf_counter()
    with quiet():
        disc.fit(paths, cache_dir=cache)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    used = disk_use(cache)
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "images": n,
        "features_s": disc.timing_["features_s"],
        "clustering_s": disc.timing_["clustering_s"],
        "total_s": round(seconds, 1),
        "peak_rss_gib": round(peak, 2),
        "cache_gib": round(used / 2**30, 2),
        "scale": disc.report_.scale,
    }


def features_per_second(backend: str, n: int) -> dict[str, float]:
    from PIL import Image

    from creaturekit.discovery.registry import load_backend
    from creaturekit.progress import quiet

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (256, 256, 3), np.uint8)) for _ in range(n)]
    disc = load_backend(backend)()
    with quiet():
        disc.extract(images[:2])  # load the backbone outside the timing
        start = time.perf_counter()
        disc.extract(images)
    rate = n / (time.perf_counter() - start)
    return {"backend": backend, "images": n, "images_per_s": round(rate, 1)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--workdir", type=Path, help="Images and feature cache (default: temp).")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--features", metavar="BACKEND", help="Feature throughput instead.")
    args = parser.parse_args(argv)
    if args.features:
        print(json.dumps(features_per_second(args.features, args.sizes[0])))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="discovery-scaling-"))
    if args.one:
        print(json.dumps(run_one(args.sizes[0], workdir)))
        return
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", "--workdir", str(workdir), str(n)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
