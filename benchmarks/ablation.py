"""The ablation of issue #8: what each piece of the method adds on NOVEL part combinations.

    python benchmarks/ablation.py [--model toy] [--steps 1500] [--seeds 42 43 44]
        [--project DIR] [--variants full no-attn ti-only codes-0.02 image-clusters]
        [--combinations 32]
        [--guidance G]

Uses the toy project in --project (created there, 24 species x 40 images, and
discovered with effnet-kmeans when it has no discovery result yet). Every variant is
fitted with the ``toy`` preset and the same steps and seed, then scored by
``creaturekit.evaluation.evaluate.evaluate`` on the same seen and novel combinations (drawn
with the project's eval seed, so they are identical for every variant and seed):

  full            token mapper (projector) + LoRA + attention loss: the ``toy`` preset
  no-attn         the same without the attention loss (attn_loss = 0)
  ti-only         textual inversion only: the token mapper, no LoRA (rank = 0)
  codes-0.02      the full method with the code embeddings starting at std 0.02, as
                  before issue 20 (code_init_std = 0.02)
  image-clusters  one token per whole-image cluster, no parts: the usual personalisation
                  baseline (creaturekit.evaluation.baseline), K = the toy world's species
                  count (--clusters); a requested combination is served by the cluster
                  whose member images share the most requested codes on average

It prints a table (per variant: the oracle's part accuracy and EMR on novel and on seen
combinations, mean +- sd over seeds, and the budget: optimisation steps, fit wall
seconds, seconds per step, trainable parameters) and writes ablation.json and
ablation.md (the table for docs/results.md) to --out (default DIR/ablation), rewritten
after every run so a stopped benchmark keeps what it measured. Runs are
named ablation-<variant>-seed<seed> and replaced when the benchmark runs again; the
baseline's runs live in the sibling project DIR-image-clusters (same images, linked).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from creaturekit import fsutil
from creaturekit.config import parse_assignments
from creaturekit.constants import CONFIG_NAME
from creaturekit.discovery.result import RESULT_FILE
from creaturekit.errors import CreatureKitError
from creaturekit.evaluation.metrics import GROUPS
from creaturekit.project import Project, open_project
from creaturekit.training.run import RunFolder

BASELINE = "image-clusters"
#: Variant -> (what it trains, fit settings on top of the ``toy`` preset).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("projector + LoRA + attention loss", {}),
    "no-attn": ("without the attention loss", {"attn_loss": 0.0}),
    "ti-only": ("textual inversion only (no LoRA)", {"rank": 0}),
    "codes-0.02": ("the codes start nearly alike (std 0.02)", {"code_init_std": 0.02}),
    BASELINE: ("one token per whole-image cluster (no parts)", {}),
}
FIGURES = ("novel_oracle", "novel_emr", "seen_oracle", "seen_emr", "fit_s", "step_s", "eval_s")


def toy_project(folder: Path) -> Project:
    """The toy project in ``folder``: created, and discovered with effnet-kmeans, when missing."""
    from creaturekit.discovery.discover import discover
    from creaturekit.toy.dataset import create_toy_project

    if not (folder / CONFIG_NAME).is_file():
        create_toy_project(folder)
    project = open_project(folder)
    if not (project.discovery_dir / RESULT_FILE).is_file():
        discover(project, "effnet-kmeans")
    return project


def baseline_project(project: Project, clusters: int | None, seed: int) -> Project:
    """The image-cluster baseline beside ``project`` (K = species count unless given)."""
    from creaturekit.evaluation.baseline import image_cluster_project
    from creaturekit.toy.dataset import load_ground_truth

    k = clusters or len(load_ground_truth(project).world.species)
    return image_cluster_project(project, f"{project.root}-{BASELINE}", k, seed)


def trainable_parameters(run: RunFolder) -> int:
    """Parameters a run trained: its token mapper plus its LoRA (none with rank 0)."""
    from safetensors import safe_open

    total = 0
    for path in (run.mapper, run.lora):
        if path.is_file():
            with safe_open(str(path), framework="np") as fh:
                names = list(fh.keys())
                total += sum(int(np.prod(fh.get_slice(k).get_shape())) for k in names)
    return total


def run_variant(
    project: Project,
    variant: str,
    seed: int,
    *,
    model: str,
    steps: int | None = None,
    flags: dict[str, Any] | None = None,
    combinations: int | None = None,
    per_combination: int | None = None,
    sample_steps: int | None = None,
    guidance: float | None = None,
    baseline: Project | None = None,
) -> dict[str, Any]:
    """Fit one variant with ``seed``, evaluate it in ``project``; its figures and budget."""
    from creaturekit.evaluation.baseline import ClusterServing, ServedCreatures
    from creaturekit.evaluation.evaluate import evaluate
    from creaturekit.generation.mix import Mixer
    from creaturekit.training.fit import fit

    name = f"ablation-{variant}-seed{seed}"
    home = project
    if variant == BASELINE:
        if baseline is None:
            raise CreatureKitError(f"The {BASELINE} variant needs its baseline project.")
        home = baseline
    for stale in (home.runs_dir / name, project.eval_dir / name):
        shutil.rmtree(stale, ignore_errors=True)
    settings = {**(flags or {}), **VARIANTS[variant][1], "seed": seed}
    fitted = fit(home, preset="toy", run=name, model=model, steps=steps, **settings)
    run = RunFolder(fitted.run_dir)
    metrics = evaluate(
        project,
        name,
        combinations=combinations,
        per_combination=per_combination,
        steps=sample_steps,
        guidance=guidance,
        creatures=(
            ServedCreatures(Mixer(home, name), ClusterServing.from_projects(project, home))
            if home is not project
            else None
        ),
    )
    step_times = [row["seconds"] for row in run.read_log() if "seconds" in row]
    return {
        "variant": variant,
        "seed": seed,
        "run": name,
        "project": str(home.root),
        "steps": fitted.step,
        "fit_s": round(fitted.seconds, 1),
        "step_s": round(float(np.mean(step_times)), 4) if step_times else None,
        "trainable_params": trainable_parameters(run),
        "eval_s": metrics.seconds,
        "guidance": metrics.guidance,
        "combinations": {g: metrics.group(g).combinations for g in GROUPS},
        **{f"{g}_emr": metrics.group(g).emr for g in GROUPS},
        **{f"{g}_oracle": metrics.overall.get(f"{g}_oracle_accuracy") for g in GROUPS},
        "novel_oracle_per_part": metrics.novel.oracle.per_part if metrics.novel.oracle else None,
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant (in run order): budget and the mean and sd of every figure over seeds."""
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        runs = [r for r in rows if r["variant"] == variant]
        figures = {}
        for key in FIGURES:
            values = [r[key] for r in runs if r[key] is not None]
            figures[key] = (
                {"mean": float(np.mean(values)), "sd": float(np.std(values))} if values else None
            )
        out.append(
            {
                "variant": variant,
                "what": VARIANTS[variant][0],
                "seeds": [r["seed"] for r in runs],
                "steps": runs[0]["steps"],
                "trainable_params": runs[0]["trainable_params"],
                **figures,
            }
        )
    return out


HEADER = (
    "variant",
    "novel oracle",
    "novel EMR",
    "seen oracle",
    "seen EMR",
    "steps",
    "fit s",
    "s/step",
    "trained params",
)


def table_rows(summary: list[dict[str, Any]]) -> list[list[str]]:
    """The cells of the results table (percentages for accuracies, +- sd over seeds)."""

    def cell(figure: dict[str, float] | None, scale: float, digits: int, unit: str = "") -> str:
        if figure is None:
            return "n/a"
        text = f"{figure['mean'] * scale:.{digits}f}"
        if figure["sd"] > 0:
            text += f" ± {figure['sd'] * scale:.{digits}f}"
        return text + unit

    return [
        [
            f"{s['variant']}: {s['what']}",
            cell(s["novel_oracle"], 100, 1, "%"),
            cell(s["novel_emr"], 100, 1, "%"),
            cell(s["seen_oracle"], 100, 1, "%"),
            cell(s["seen_emr"], 100, 1, "%"),
            f"{s['steps']:,}",
            cell(s["fit_s"], 1, 0),
            cell(s["step_s"], 1, 2),
            f"{s['trainable_params']:,}",
        ]
        for s in summary
    ]


def markdown(summary: list[dict[str, Any]]) -> str:
    """The table as Markdown (the fragment for docs/results.md)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summary)]
    return "\n".join(lines) + "\n"


def plain(summary: list[dict[str, Any]]) -> str:
    """The table aligned for a terminal."""
    rows = [list(HEADER), *table_rows(summary)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="toy", help="base model (default: the toy base)")
    parser.add_argument("--steps", type=int, help="fit steps (default: the toy preset's)")
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[42])
    parser.add_argument("--project", default="/tmp/creaturekit-ablation", help="toy project")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME"
    )
    parser.add_argument("--combinations", type=int, default=32, help="per group (seen, novel)")
    parser.add_argument("--per-combination", type=int, help="images per combination")
    parser.add_argument("--sample-steps", type=int, help="denoising steps of the evaluation")
    parser.add_argument(
        "--guidance", type=float, help="guidance of the evaluation (default: mix.guidance)"
    )
    parser.add_argument("--clusters", type=int, help="K of image-clusters (default: species)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a fit setting"
    )
    parser.add_argument("--out", help="folder for ablation.json and ablation.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the ablation; print the table; write ablation.json and ablation.md."""
    from creaturekit.models import resolve_model

    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    flags = parse_assignments(args.set, "--set", "lr_schedule=cosine")
    try:
        resolve_model(args.model)  # before minutes of set-up: is the base model there?
        project = toy_project(Path(args.project).expanduser().resolve())
        baseline = (
            baseline_project(project, args.clusters, project.config.discover.seed)
            if BASELINE in args.variants
            else None
        )
        out = Path(args.out) if args.out else project.root / "ablation"
        rows: list[dict[str, Any]] = []
        for seed in args.seeds:
            for variant in args.variants:
                row = run_variant(
                    project,
                    variant,
                    seed,
                    model=args.model,
                    steps=args.steps,
                    flags=flags,
                    combinations=args.combinations,
                    per_combination=args.per_combination,
                    sample_steps=args.sample_steps,
                    guidance=args.guidance,
                    baseline=baseline,
                )
                rows.append(row)
                summary = write_report(out, project, argv, args.model, flags, rows)
    except CreatureKitError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    print(plain(summary))
    print(f"\nWritten: {out / 'ablation.json'}, {out / 'ablation.md'}")
    return 0


def write_report(
    out: Path,
    project: Project,
    argv: list[str],
    model: str,
    flags: dict[str, Any],
    rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Write ablation.json and ablation.md for the runs so far (a stopped run keeps them)."""
    from creaturekit.discovery.discover import load_result

    summary = summarise(rows)
    report = {
        "command": " ".join(["python benchmarks/ablation.py", *argv]),
        "model": model,
        "project": str(project.root),
        "discovery": load_result(project).backend,
        "fit_settings": flags,
        "summary": summary,
        "runs": rows,
    }
    fsutil.write_json(out / "ablation.json", report)
    fsutil.write_text(out / "ablation.md", markdown(summary))
    return summary


if __name__ == "__main__":
    sys.exit(main())
