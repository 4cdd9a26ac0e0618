"""Discovery quality on the toy world: part NMI/ARI vs true masks, sub-concept purity.

    python benchmarks/discovery_quality.py --backend effnet-kmeans [--per-species 10]
        [--size 224] [--option image_size=128 ...] [--project DIR] [--seeds 42 43 44 45 46]
        [--sample-images 120 --subconcept-points 15] [--kmeans faiss]   # [discover] scale

Creates (or reuses) a toy project, runs ``discover`` with the given backend and options
once per seed, and prints the figures of docs/discovery.md as JSON: per seed, and their
mean and standard deviation (k-means results move by a few points from seed to seed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from creaturekit.config import parse_assignments
from creaturekit.discovery.discover import discover
from creaturekit.progress import quiet
from creaturekit.project import Project, open_project
from creaturekit.toy.dataset import DEFAULT_SIZE, create_toy_project, load_ground_truth
from creaturekit.toy.discovery_scores import discovery_scores, pool_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="effnet-kmeans")
    parser.add_argument("--project", default="/tmp/creaturekit-toy-quality")
    parser.add_argument("--per-species", type=int, default=10)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="Toy image side (new).")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE (TOML, else text)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--sample-images", type=int, help="[discover] sample_images")
    parser.add_argument("--subconcept-points", type=int, help="[discover] subconcept_points")
    parser.add_argument("--kmeans", help="[discover] kmeans (engine)")
    args = parser.parse_args()
    folder = Path(args.project)
    if (folder / "creaturekit.toml").is_file():
        project = open_project(folder)
    else:
        project = create_toy_project(folder, per_species=args.per_species, size=args.size)
    options = parse_assignments(args.option, "--option", "position_weight=0.5")
    for key in ("sample_images", "subconcept_points", "kmeans"):  # this run only, not saved
        if getattr(args, key) is not None:
            setattr(project.config.discover, key, getattr(args, key))
    runs = [measure(project, args.backend, {**options, "seed": seed}) for seed in args.seeds]
    figures = ("fg_iou", "part_nmi", "part_ari", "fg_part_nmi", "fg_part_ari", "subconcept_purity")
    summary = {
        k: {
            "mean": round(float(np.mean([r[k] for r in runs])), 3),
            "sd": round(float(np.std([r[k] for r in runs])), 3),
        }
        for k in figures
    }
    print(
        json.dumps(
            {"backend": args.backend, "options": options, "summary": summary, "runs": runs},
            indent=1,
        )
    )


def measure(project: Project, backend: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run discovery once with ``options`` and score it against the toy ground truth."""
    start = time.perf_counter()
    with quiet():
        result = discover(project, backend, report=False, **options)
    truth = load_ground_truth(project)
    h, w = result.grid
    masks = {row["id"]: m for row, m in zip(result.codes, result.masks, strict=True)}
    codes = {row["id"]: {int(k): v for k, v in row["codes"].items()} for row in result.codes}
    scores = discovery_scores(truth, masks, codes)
    fg_parts = [p for p in scores["parts"] if p["ground_truth"] != "bg"]
    bg = result.background_index
    pred_fg = np.stack([masks[i] != bg for i in sorted(masks)])
    true_fg = np.stack([pool_labels(truth.mask(i), h) > 0 for i in sorted(masks)])
    fg_iou = float((pred_fg & true_fg).sum() / max(1, (pred_fg | true_fg).sum()))
    return {
        "seed": options["seed"],
        "images": scores["images"],
        "grid": [h, w],
        "fg_iou": round(fg_iou, 3),
        "part_nmi": round(scores["nmi"] / 100, 3),
        "part_ari": round(scores["ari"] / 100, 3),
        "fg_part_nmi": round(scores["fg_nmi"] / 100, 3),
        "fg_part_ari": round(scores["fg_ari"] / 100, 3),
        "subconcept_purity": round(
            sum(p["purity"] * p["images"] for p in fg_parts)
            / max(1, sum(p["images"] for p in fg_parts)),
            3,
        ),
        "parts": [
            {k: p[k] for k in ("index", "ground_truth", "images", "purity")}
            for p in scores["parts"]
        ],
        "timing": result.timing,
        "scale": result.scale,
        "wall_s": round(time.perf_counter() - start, 1),
    }


if __name__ == "__main__":
    main()
