"""Clustering cost of the shared hierarchy vs number of images, on synthetic feature sets.

    python benchmarks/discovery_scaling.py 200 1000 6000   # images per run
    python benchmarks/discovery_scaling.py --features effnet-kmeans 64   # features/s

Each size runs in a fresh process so its peak memory (max RSS) is its own. Synthetic
sets mimic CUB: 16x16 patches x 768 dims, fp16; border patches from background
centres, inner patches from 8 part centres with per-image variants.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import numpy as np

PATCHES, DIMS, SIDE = 256, 768, 16


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 256, 768)`` fp16 features, generated chunk by chunk."""
    rng = np.random.default_rng(seed)
    bg = rng.normal(size=(4, DIMS)).astype(np.float32)
    parts = rng.normal(size=(8, 4, DIMS)).astype(np.float32)  # 4 variants per part
    y, x = np.divmod(np.arange(PATCHES), SIDE)
    inner = (y >= 4) & (y < 12) & (x >= 4) & (x < 12)
    part_of = ((y - 4) // 4) * 4 + (x - 4) // 2
    out = np.empty((n, PATCHES, DIMS), np.float16)
    for i in range(n):
        variant = rng.integers(0, 4, 8)
        rows = np.where(inner[:, None], parts[part_of.clip(0, 7), variant[part_of.clip(0, 7)]],
                        bg[(i + y // 8) % 4])  # fmt: skip
        out[i] = rows + 0.5 * rng.normal(size=(PATCHES, DIMS)).astype(np.float32)
    return out


def run_one(n: int) -> dict[str, float]:
    from creaturekit.discovery import hierarchy

    feats = synthetic(n)
    start = time.perf_counter()
    hierarchy.fit(feats, (SIDE, SIDE), hierarchy.HierarchyParams())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"images": n, "clustering_s": round(seconds, 1), "peak_rss_gib": round(peak, 2),
            "features_gib": round(feats.nbytes / 2**30, 2)}  # fmt: skip


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
    if argv[:1] == ["--one"]:
        print(json.dumps(run_one(int(argv[1]))))
        return
    if argv[:1] == ["--features"]:
        print(json.dumps(features_per_second(argv[1], int(argv[2]))))
        return
    for n in argv or ["200", "1000"]:
        out = subprocess.run([sys.executable, __file__, "--one", n], capture_output=True,
                             text=True, check=True)  # fmt: skip
        print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
