"""Per-image time of `mix` vs the plain diffusers pipeline, same model, steps and size.

    python benchmarks/mix_speed.py [--steps 30] [--size 64] [--repeats 3]

Builds a small random Stable-Diffusion-shaped pipeline in a temp folder (no download),
fits a 1-step run on a toy project so that `mix` has a real mapper and LoRA, then times
``StableDiffusionPipeline(prompt)`` with the LoRA loaded against ``Mixer(...)`` (part
tokens through the mapper), interleaved, in one process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from creaturekit.generation.mix import Mixer
    from creaturekit.progress import quiet
    from creaturekit.training.fit import fit
    from tests.tiny_sd import discovered_toy_project, save_tiny_pipeline

    with tempfile.TemporaryDirectory() as tmp, quiet():
        model = save_tiny_pipeline(Path(tmp) / "sd")
        project = discovered_toy_project(Path(tmp) / "toy")
        fit(
            project,
            preset="toy",
            run="bench",
            model=str(model),
            steps=1,
            resolution=16,
            attn_resolution=8,
            sample_every=0,
        )
        mixer = Mixer(project)
        plain = StableDiffusionPipeline.from_pretrained(
            model, safety_checker=None, requires_safety_checker=False
        )
        plain.scheduler = DDIMScheduler.from_config(plain.scheduler.config)
        plain.load_lora_weights(project.runs_dir / "bench")
        plain.set_progress_bar_config(disable=True)
        negative = project.config.mix.negative
        times: dict[str, list[float]] = {"plain": [], "mix": []}
        for i in range(args.repeats + 1):
            t0 = time.perf_counter()
            plain(
                "a photo of a creature",
                negative_prompt=negative,
                height=args.size,
                width=args.size,
                num_inference_steps=args.steps,
                generator=torch.Generator().manual_seed(i),
            )
            t1 = time.perf_counter()
            mixer({"part0": [1], "bg": [0]}, seed=i, steps=args.steps, size=args.size)
            t2 = time.perf_counter()
            if i:  # the first round warms up
                times["plain"].append(t1 - t0)
                times["mix"].append(t2 - t1)
    plain_s = sorted(times["plain"])[len(times["plain"]) // 2]
    mix_s = sorted(times["mix"])[len(times["mix"]) // 2]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} steps, "
        f"{args.size} px, median of {args.repeats}"
    )
    print(
        f"plain diffusers {plain_s:.3f} s/image | mix {mix_s:.3f} s/image | "
        f"ratio x{mix_s / plain_s:.3f}"
    )


if __name__ == "__main__":
    main()
