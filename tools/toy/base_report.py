"""What the toy base model draws: prompts vs generations judged by the oracle, and speed.

``python -m tools.toy.base_report docs/images/toy-base.png`` loads the base model
(``--model toy`` by default, through the same resolver as every command), generates
creatures from full captions of held-out (novel) and random part combinations, and
writes a PNG grid: the caption, a drawing of what it describes, then the generations,
each with one square per part and the scene (green: the oracle reads what the caption
asks, red: it does not). It prints the oracle's accuracy on the grid and the sampling
time of one image (30 steps with guidance, batch 1) as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from creaturekit import fsutil
from creaturekit.conditioning.base_model import load_base_model
from creaturekit.conditioning.pipeline import build_pipeline
from creaturekit.toy.draw import render
from creaturekit.toy.oracle import COLUMNS, Oracle, load_oracle
from creaturekit.toy.world import N_VARIANTS, PARTS, SCENES
from tools.toy.base_model import IMAGE_SIZE, caption
from tools.toy.base_stages import HELD_OUT, generate_from_truth

TEXT_WIDTH = 230
SCALE = 2
"""Generations are shown enlarged (nearest neighbour) to make small parts visible."""


def report_rows(n: int, seed: int = 0) -> np.ndarray:
    """Truth rows of the grid: the first half held-out combinations, then random ones."""
    rng = np.random.default_rng([seed, 99])
    held_out = sorted(HELD_OUT)
    novel = [held_out[i] for i in rng.choice(len(held_out), n - n // 2, replace=False)]
    random = rng.integers(0, N_VARIANTS, (n // 2, len(PARTS))).tolist()
    combos = np.asarray([*novel, *random])
    return np.concatenate([combos, rng.integers(0, len(SCENES), (n, 1))], axis=1)


def judge(oracle: Oracle, images: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, len(COLUMNS)) booleans: whether the oracle reads each column as asked."""
    return oracle.predict(images) == truth


def prompt_grid(truth: np.ndarray, images: np.ndarray, correct: np.ndarray) -> Image.Image:
    """The grid: per row the caption, a drawing of it, then its generations with marks."""
    per_row = len(images) // len(truth)
    cell = IMAGE_SIZE * SCALE
    mark = cell // len(COLUMNS)
    size = (TEXT_WIDTH + (per_row + 1) * (cell + 4), len(truth) * (cell + 14))
    sheet = Image.new("RGB", size, "white")
    pen = ImageDraw.Draw(sheet)
    for r, row in enumerate(truth):
        y = r * (cell + 14)
        kind = "novel" if tuple(row[: len(PARTS)].tolist()) in HELD_OUT else "random"
        text = caption(row[: len(PARTS)].tolist(), int(row[len(PARTS)]))
        pen.text((4, y + 4), f"[{kind}] " + "\n".join(textwrap.wrap(text, 36)), fill="black")
        rng = np.random.default_rng([0, r])
        drawing = render(row[: len(PARTS)].tolist(), int(row[len(PARTS)]), IMAGE_SIZE, rng)
        sheet.paste(Image.fromarray(drawing.image).resize((cell, cell)), (TEXT_WIDTH, y))
        for k in range(per_row):
            i = r * per_row + k
            x = TEXT_WIDTH + (k + 1) * (cell + 4)
            sheet.paste(
                Image.fromarray(images[i]).resize((cell, cell), Image.Resampling.NEAREST), (x, y)
            )
            for c, ok in enumerate(correct[i]):
                box = (x + c * mark, y + cell + 2, x + (c + 1) * mark - 2, y + cell + 10)
                pen.rectangle(box, fill=(40, 170, 60) if ok else (210, 40, 40))
    return sheet


def sampling_seconds(base: Any, steps: int, guidance: float, repeats: int = 5) -> float:
    """Median wall time of one image (batch 1) at ``steps`` steps with ``guidance``."""
    pipe = build_pipeline(base)
    prompt = caption((0, 1, 2, 3), 0)
    times = []
    for i in range(repeats + 1):  # the first call warms up
        began = time.perf_counter()
        pipe(
            prompt,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=IMAGE_SIZE,
            width=IMAGE_SIZE,
            generator=torch.Generator().manual_seed(i),
        )
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def base_report(
    out: Path,
    model: str = "toy",
    rows: int = 8,
    seeds: int = 4,
    steps: int = 30,
    guidance: float = 7.5,
    repeats: int = 5,
) -> dict[str, Any]:
    """Write the grid PNG to ``out``; return the oracle's accuracy on it and the speed."""
    base = load_base_model(model)
    truth = report_rows(rows)
    repeated = np.repeat(truth, seeds, axis=0)
    images = generate_from_truth(base, repeated, steps, guidance, seed=0)
    correct = judge(load_oracle(), images, repeated)
    with fsutil.atomic_path(out) as tmp:
        prompt_grid(truth, images, correct).save(tmp, format="PNG", optimize=True)
    novel = np.asarray([tuple(r[: len(PARTS)].tolist()) in HELD_OUT for r in repeated])
    return {
        "grid": str(out),
        "images": len(images),
        "accuracy": {
            kind: {c: round(float(correct[chosen, i].mean()), 4) for i, c in enumerate(COLUMNS)}
            for kind, chosen in (("novel", novel), ("random", ~novel))
        },
        "seconds_per_image": round(sampling_seconds(base, steps, guidance, repeats), 3),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    """Write the grid and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG to write.")
    parser.add_argument("--model", default="toy")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=4, help="Generations per caption.")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    figures = base_report(args.out, args.model, args.rows, args.seeds, args.steps, args.guidance)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
