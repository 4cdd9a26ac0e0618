"""Oracle accuracy on NOVEL combinations and code distinctness along a toy fit.

    python benchmarks/fit_curve.py --project DIR --run RUN [--steps 250 500 1000 1500]
        [--set KEY=VALUE ...] [--model M] [--combinations 64] [--draw 0] [--sample-steps N]
        [--out FILE]

RUN is fitted first when the project has no such run (the project's fit preset, ``--set``
fit settings on top, as many steps as the last listed one and a checkpoint kept at every
listed step); an existing run must have kept checkpoints at those steps, e.g. with
``[fit] overrides = {checkpoint_every = 250, keep_checkpoints = 10}``. Each listed
checkpoint of RUN becomes a run
``RUN-at-STEP`` (``creaturekit.training.fit.run_from_checkpoint``); each is scored like
``benchmarks/mix_settings.py`` scores a run (the novel combinations ``eval`` draws, the
project's mix settings, the toy oracle) and its parts' code distinctness is recorded (the
median cosine between a part's code vectors and how often the probe prefers an image's
own code, ``creaturekit.training.distinctness``). Prints a
line per step and writes them as JSON to --out (default DIR/fit-curve.json).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from creaturekit import fsutil
from creaturekit.config import parse_assignments
from creaturekit.errors import CreatureKitError
from creaturekit.project import Project, open_project

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other benchmark scripts
from mix_settings import score_settings


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--project", required=True, help="a toy project with a fitted run")
    parser.add_argument("--run", required=True, help="the run whose checkpoints are scored")
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000, 1500])
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a fit setting"
    )
    parser.add_argument("--model", help="base model of the fit (default: the project's)")
    parser.add_argument("--combinations", type=int, default=64, help="novel combinations")
    parser.add_argument("--draw", type=int, default=0, help="seed of the combination draw")
    parser.add_argument("--sample-steps", type=int, help="denoising steps (default: mix.steps)")
    parser.add_argument("--out", help="JSON file (default: DIR/fit-curve.json)")
    return parser.parse_args(argv)


def fit_if_missing(project: Project, args: argparse.Namespace) -> None:
    """Fit ``args.run`` with a checkpoint kept at every listed step, unless it exists."""
    from creaturekit.training.fit import fit
    from creaturekit.training.run import run_folder

    flags = parse_assignments(args.set, "--set", "lr_schedule=cosine")
    if (run_folder(project, args.run).path / "config.toml").is_file():
        if flags or args.model:
            raise CreatureKitError(
                f"The run {args.run!r} exists already; --set and --model apply to a run this "
                "benchmark fits: choose another --run."
            )
        return
    every = math.gcd(*args.steps)
    last = max(args.steps)
    checkpoints = {"checkpoint_every": every, "keep_checkpoints": last // every}
    fit(project, run=args.run, model=args.model, steps=last, **(flags | checkpoints))


def main(argv: list[str] | None = None) -> int:
    """Score every listed checkpoint; print a line each; write the JSON."""
    from creaturekit.discovery.discover import load_result
    from creaturekit.discovery.naming import part_names
    from creaturekit.evaluation.evaluate import distinctness
    from creaturekit.generation.mix import Mixer
    from creaturekit.training.fit import run_from_checkpoint
    from creaturekit.training.run import run_folder

    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    rows = []
    try:
        project = open_project(args.project)
        fit_if_missing(project, args)
        mix = project.config.mix
        result = load_result(project)
        names = part_names(project, result)
        for step in args.steps:
            name = f"{args.run}-at-{step}"
            folder = run_folder(project, name)
            if not folder.mapper.is_file():
                folder = run_from_checkpoint(project, args.run, step, name)
            mixer = Mixer(project, name)
            (row,) = score_settings(
                project,
                name,
                [(mix.guidance, mix.negative)],
                combinations=args.combinations,
                draw=args.draw,
                steps=args.sample_steps,
                mixer=mixer,
            )
            distinct = distinctness(mixer, names, result)
            rows.append({"step": step, **row, **distinct})
            parts = ", ".join(f"{p} {100 * a:.0f}%" for p, a in row["per_part"].items())
            similarity = distinct["code_similarity"] or {}
            recognition = distinct["code_recognition"] or {}
            figures = [
                f"{p} {v:.3f}"
                + (f"/{recognition[p]:.0%}" if recognition.get(p) is not None else "")
                for p, v in similarity.items()
                if v is not None
            ]
            print(
                f"step {step}: {100 * row['accuracy']:.1f}% ({parts}); cosine / own code "
                f"preferred: {', '.join(figures)}"
            )
    except CreatureKitError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else project.root / "fit-curve.json"
    command = " ".join(["python benchmarks/fit_curve.py", *argv])
    fsutil.write_json(out, {"command": command, "rows": rows})
    print(f"\nWritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
