"""Oracle part accuracy of fitted toy runs on NOVEL combinations under other mix settings.

    python benchmarks/mix_settings.py --project DIR --runs RUN [RUN ...]
        [--guidance 5 7.5] [--negative "" "blurry, ugly"] [--combinations 64] [--draw 0]
        [--sample-steps N] [--out FILE]

Mix settings do not change a fit, so they can be tuned without refitting: every run
re-mixes the novel combinations that an evaluation with seed --draw asks for (the same
ones as ``creaturekit eval --seed DRAW``), one image each with generation seeds 0, 1, ...
(as ``eval`` with its default seed 0), under every guidance x negative prompt (default:
the project's ``[mix]`` values), and the toy oracle reads which part variants each image
shows. Prints a line per run and setting (accuracy, per part) and writes them all as
JSON to --out (default DIR/mix-settings.json). At draw 0 the figure equals the novel
oracle accuracy ``creaturekit eval`` reports with the same settings.
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any

from creaturekit import fsutil
from creaturekit.errors import CreatureKitError
from creaturekit.project import Project, open_project


def score_settings(
    project: Project,
    run: str,
    settings: list[tuple[float, str]],
    *,
    combinations: int,
    draw: int,
    steps: int | None = None,
    mixer: Any = None,
) -> list[dict[str, Any]]:
    """Novel-combination oracle figures of ``run`` under each (guidance, negative)
    (``mixer``: the run already loaded)."""
    from creaturekit.discovery.discover import load_result
    from creaturekit.discovery.naming import part_names
    from creaturekit.evaluation.combinations import code_rows, evaluation_draw
    from creaturekit.evaluation.reference import find_reference
    from creaturekit.generation.mix import Mixer
    from creaturekit.progress import track

    result = load_result(project)
    reference = find_reference(project, result)
    if reference is None:
        raise CreatureKitError(
            "The oracle needs a toy project (`creaturekit init DIR --example toy`)."
        )
    combos = evaluation_draw(code_rows(result), combinations, draw)["novel"]
    names = part_names(project, result)
    mixer = mixer or Mixer(project, run)
    rows = []
    for guidance, negative in settings:
        started = time.monotonic()
        images = [
            image
            for j, combo in enumerate(track(combos, f"{run}, guidance {guidance}"))
            for image in mixer(
                {names[m]: [k] for m, k in combo.items()},
                seed=j,
                steps=steps,
                guidance=guidance,
                negative=negative,
            ).images
        ]
        scores = reference.score(combos, images, names)
        rows.append(
            {
                "run": run,
                "guidance": guidance,
                "negative": negative,
                "draw": draw,
                "combinations": len(combos),
                "accuracy": scores.accuracy,
                "per_part": scores.per_part,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    return rows


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--project", required=True, help="a toy project with fitted runs")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN")
    parser.add_argument("--guidance", type=float, nargs="+", help="default: mix.guidance")
    parser.add_argument("--negative", nargs="+", help="negative prompts (default: mix.negative)")
    parser.add_argument("--combinations", type=int, default=64, help="novel combinations")
    parser.add_argument("--draw", type=int, default=0, help="seed of the combination draw")
    parser.add_argument("--sample-steps", type=int, help="denoising steps (default: mix.steps)")
    parser.add_argument("--out", help="JSON file (default: DIR/mix-settings.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Score every run under every setting; print a line each; write the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        project = open_project(args.project)
        mix = project.config.mix
        settings = list(product(args.guidance or [mix.guidance], args.negative or [mix.negative]))
        rows = []
        for run in args.runs:
            for row in score_settings(
                project,
                run,
                settings,
                combinations=args.combinations,
                draw=args.draw,
                steps=args.sample_steps,
            ):
                rows.append(row)
                parts = ", ".join(f"{p} {100 * a:.0f}%" for p, a in row["per_part"].items())
                print(
                    f"{run}  guidance {row['guidance']:g}  negative {row['negative']!r}: "
                    f"{100 * row['accuracy']:.1f}% ({parts})"
                )
    except CreatureKitError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else project.root / "mix-settings.json"
    command = " ".join(["python benchmarks/mix_settings.py", *argv])
    fsutil.write_json(out, {"command": command, "rows": rows})
    print(f"\nWritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
