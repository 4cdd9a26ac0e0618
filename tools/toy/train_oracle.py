"""Train the toy oracle and measure it: ``python -m tools.toy.train_oracle --out DIR``.

Training images are freshly drawn creatures whose part variants and scene are drawn
independently (not the species), with the same pose, occlusion and noise as the data
sets. Accuracy is measured on new images (other seeds): random combinations and the
novel combinations of the default world.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from creaturekit import fsutil
from creaturekit.toy.draw import render
from creaturekit.toy.oracle import (
    COLUMNS,
    CONFIG_NAME,
    NOT_VISIBLE,
    ORACLE_SIZE,
    WEIGHTS_NAME,
    Oracle,
    OracleNet,
    accuracy,
    default_dir,
    to_tensor,
)
from creaturekit.toy.world import N_VARIANTS, PARTS, SCENES, make_world

TRAIN_STREAM, TEST_STREAM, NOVEL_STREAM = 1, 2, 3


@dataclass
class Examples:
    """Drawings at ORACLE_SIZE, their masks and truth rows (oracle prediction format)."""

    images: np.ndarray  # (N, S, S, 3) uint8
    masks: np.ndarray  # (N, S, S) uint8
    truth: np.ndarray  # (N, len(COLUMNS)) int64


@dataclass
class OracleTrainConfig:
    """Hyper-parameters of one oracle training (saved with the weights)."""

    train_images: int = 20_000
    epochs: int = 3
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    forcing: float = 0.5  # share of the steps over which teacher forcing fades out
    width: int = 16
    seed: int = 0
    workers: int = 2


def save_oracle(net: OracleNet, config: dict[str, Any], folder: str | Path) -> None:
    """Write the weights (safetensors) and ``config`` (JSON) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    fsutil.save_safetensors(state, folder / WEIGHTS_NAME, metadata={"format": "pt"})
    fsutil.write_json(folder / CONFIG_NAME, config)


def render_examples(
    n: int,
    seed: int,
    stream: int,
    combos: Sequence[tuple[int, ...]] | None = None,
    start: int = 0,
) -> Examples:
    """``n`` fresh drawings at ORACLE_SIZE with their masks and truth.

    Variants and scenes are drawn independently, or cycle through ``combos`` when given.
    Image ``i`` depends only on (seed, stream, i), so any slice can be drawn anywhere.
    """
    images = np.empty((n, ORACLE_SIZE, ORACLE_SIZE, 3), dtype=np.uint8)
    masks = np.empty((n, ORACLE_SIZE, ORACLE_SIZE), dtype=np.uint8)
    truth = np.empty((n, len(COLUMNS)), dtype=np.int64)
    for row, i in enumerate(range(start, start + n)):
        rng = np.random.default_rng([seed, stream, i])
        if combos:
            combo = combos[i % len(combos)]
        else:
            combo = tuple(int(v) for v in rng.integers(0, N_VARIANTS, len(PARTS)))
        scene = int(rng.integers(0, len(SCENES)))
        drawing = render(combo, scene, ORACLE_SIZE, rng)
        images[row], masks[row] = drawing.image, drawing.mask
        truth[row, : len(PARTS)] = [
            v if seen else NOT_VISIBLE for v, seen in zip(combo, drawing.visible, strict=True)
        ]
        truth[row, len(PARTS)] = scene
    return Examples(images, masks, truth)


def render_parallel(
    n: int,
    seed: int,
    stream: int,
    combos: Sequence[tuple[int, ...]] | None = None,
    workers: int = 2,
) -> Examples:
    """:func:`render_examples` split over ``workers`` processes (same result)."""
    if workers <= 1:
        return render_examples(n, seed, stream, combos)
    chunk = math.ceil(n / (workers * 8))
    starts = range(0, n, chunk)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        parts = list(
            pool.map(
                render_examples,
                [min(chunk, n - s) for s in starts],
                [seed] * len(starts),
                [stream] * len(starts),
                [combos] * len(starts),
                starts,
            )
        )
    return Examples(
        *(np.concatenate([getattr(p, k) for p in parts]) for k in ("images", "masks", "truth"))
    )


def _regions(masks: torch.Tensor, grid: int) -> torch.Tensor:
    """Each cell's share of every label: (B, S, S) masks -> (B, P + 1, grid, grid)."""
    onehot = F.one_hot(masks.long(), len(PARTS) + 1).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, grid)


def train(config: OracleTrainConfig, log: bool = True) -> OracleNet:
    """Train an oracle from scratch on freshly drawn images."""
    torch.manual_seed(config.seed)
    data = render_parallel(config.train_images, config.seed, TRAIN_STREAM, workers=config.workers)
    x, masks = to_tensor(data.images), torch.from_numpy(data.masks)
    truth = torch.from_numpy(data.truth)
    part_y = torch.where(truth[:, : len(PARTS)] == NOT_VISIBLE, N_VARIANTS, truth[:, : len(PARTS)])
    scene_y = truth[:, len(PARTS)]
    net = OracleNet(width=config.width)
    steps = config.epochs * math.ceil(len(x) / config.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(config.seed)
    net.train()
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), config.batch_size):
            idx = order[start : start + config.batch_size]
            regions = _regions(masks[idx], ORACLE_SIZE // 2)
            forcing = max(0.0, 1.0 - step / (config.forcing * steps))
            parts, scene, seg = net(x[idx], regions, forcing)
            loss = loss_fn(parts.reshape(-1, N_VARIANTS + 1), part_y[idx].reshape(-1))
            loss = loss + loss_fn(scene, scene_y[idx])
            loss = loss - (regions * seg.log_softmax(dim=1)).sum(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += loss.item() * len(idx)
        if log:
            print(f"epoch {epoch + 1}/{config.epochs}: loss {total / len(x):.4f}", flush=True)
    return net.eval()


def measure(
    oracle: Oracle, n_test: int, seed: int, workers: int = 2
) -> dict[str, dict[str, float]]:
    """Per-column accuracy on new random combinations and on the default novel ones."""
    sets = {
        "random": render_parallel(n_test, seed, TEST_STREAM, workers=workers),
        "novel": render_parallel(n_test, seed, NOVEL_STREAM, make_world().novel, workers),
    }
    return {name: accuracy(oracle.predict(d.images), d.truth) for name, d in sets.items()}


def main(argv: list[str] | None = None) -> None:
    """Train, measure and save an oracle (weights + oracle.json with the accuracy)."""
    defaults = OracleTrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(default_dir()), help="Folder to write into.")
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--test-images", type=int, default=2000, help="Per test set.")
    args = vars(parser.parse_args(argv))
    out, n_test = args.pop("out"), args.pop("test_images")
    config = OracleTrainConfig(**args)
    torch.set_num_threads(config.workers)
    began = time.perf_counter()
    net = train(config)
    train_seconds = time.perf_counter() - began
    oracle = Oracle(net=net, config={"model": {"width": config.width}})
    scores = measure(oracle, n_test, config.seed + 1000, config.workers)
    oracle.config.update(
        training={**asdict(config), "seconds": round(train_seconds, 1)},
        accuracy={"test_images": n_test, **scores},
        columns=list(COLUMNS),
        image_size=ORACLE_SIZE,
    )
    save_oracle(net, oracle.config, out)
    print(f"trained in {train_seconds:.0f} s; saved to {out}")
    for name, acc in scores.items():
        print(f"{name:>7}: " + "  ".join(f"{c} {a:.4f}" for c, a in acc.items()))


if __name__ == "__main__":
    main()
