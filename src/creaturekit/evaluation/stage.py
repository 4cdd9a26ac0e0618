"""``eval`` on a project: generate requested combinations with a run, re-code, score, report."""

from __future__ import annotations

import html
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from creaturekit import __version__, fsutil
from creaturekit.errors import CreatureKitError
from creaturekit.evaluation.combinations import Combination, code_rows, evaluation_draw
from creaturekit.evaluation.image_metrics import IMAGE_HEADLINES, ImageScorer
from creaturekit.evaluation.keypoints import keypoint_scores
from creaturekit.evaluation.metrics import recoding_scores
from creaturekit.evaluation.toy import oracle_scores, toy_reference
from creaturekit.generation.stage import Mixer
from creaturekit.progress import track
from creaturekit.project import Project

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
SHOWN = 4  # best and worst images shown in the report


def evaluate(
    project: Project,
    run: str | None = None,
    *,
    combinations: int | None = None,
    per_combination: int | None = None,
    seed: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    negative: str | None = None,
    size: int | None = None,
    image_metrics: bool | None = None,
    image_model: str | None = None,
    fid_model: str | None = None,
    clip_model: str | None = None,
    mixer: Mixer | None = None,
    serve: Callable[[Combination], dict[str, list[int]]] | None = None,
) -> dict[str, Any]:
    """Score a run on seen and novel combinations; write ``eval/<run>/``; return the metrics.

    Unset options come from ``[eval]`` in creaturekit.toml (``guidance`` and ``negative``
    from ``[mix]``).
    The image metrics' backbones (:mod:`creaturekit.evaluation.image_metrics`) are loaded
    and the training images embedded before any image is generated.

    ``mixer`` and ``serve`` evaluate a baseline fitted on another vocabulary over the same
    images (:mod:`creaturekit.evaluation.baseline`): ``serve`` turns each requested
    combination (this project's part -> code) into the mixer's request.
    """
    from creaturekit.discovery.naming import part_names
    from creaturekit.discovery.stage import load_discoverer, load_result

    settings = project.config.eval
    n = combinations or settings.combinations
    per = per_combination or settings.images_per_combination
    seed = settings.seed if seed is None else seed
    guidance = project.config.mix.guidance if guidance is None else guidance
    negative = project.config.mix.negative if negative is None else negative
    started = time.monotonic()
    result = load_result(project)
    scorer = None
    if settings.image_metrics if image_metrics is None else image_metrics:
        scorer = ImageScorer(
            project,
            image_model=image_model or settings.image_model,
            fid_model=fid_model or settings.fid_model,
            clip_model=settings.clip_model if clip_model is None else clip_model,
        )
        scorer.prepare(result)
    mixer = mixer or Mixer(project, run)
    discoverer = load_discoverer(project.discovery_dir)
    groups = evaluation_draw(code_rows(result), n, seed)
    names = part_names(project, result)
    centroids = discoverer.hierarchy_.sub_centroids
    metrics: dict[str, Any] = {
        "run": mixer.run.path.name,
        "seed": seed,
        "images_per_combination": per,
        "guidance": guidance,
        "negative": negative,
        "creaturekit_version": __version__,
    }
    reference = toy_reference(project, result)
    if reference is not None:
        metrics["discovery"] = reference.discovery
    keypoints = keypoint_scores(project, result)
    if keypoints is not None:
        metrics.setdefault("discovery", {})["keypoints"] = keypoints
    images: dict[str, list[Image.Image]] = {}
    for group, combos in groups.items():
        requested: list[Combination] = []
        generated: list[Image.Image] = []
        for j, combo in enumerate(
            track(combos, f"Generating {group} combinations", total=len(combos))
        ):
            parts = serve(combo) if serve else {names[m]: [k] for m, k in combo.items()}
            mix = mixer(
                parts,
                n=per,
                seed=seed + j * per,
                steps=steps,
                guidance=guidance,
                negative=negative,
                size=size,
            )
            generated.extend(mix.images)
            requested.extend([combo] * per)
        coding = discoverer.encode(generated) if generated else None
        scores = (
            recoding_scores(requested, coding.codes, coding.part_features, centroids, names)
            if coding is not None
            else {"emr": 0.0, "cosim": 0.0, "per_part": {}, "images": []}
        )
        scores["combinations"] = len(combos)
        if reference is not None:
            scores["oracle"] = oracle_scores(reference, requested, generated, names)
        if scorer is not None:
            scores["image"] = scorer.group(requested, generated, names, seed)
        metrics[group] = scores
        images[group] = generated
    metrics["overall"] = {f"{g}_{k}": metrics[g][k] for g in groups for k in ("emr", "cosim")}
    if reference is not None:
        metrics["overall"].update(
            {f"{g}_oracle_accuracy": metrics[g]["oracle"]["accuracy"] for g in groups}
        )
    if scorer is not None:
        metrics["image_metrics"] = scorer.describe()
        metrics["overall"].update(
            {
                f"{g}_{k}": metrics[g]["image"][k]
                for g in groups
                for k in IMAGE_HEADLINES
                if k in metrics[g]["image"]
            }
            | {k: v for k, v in scorer.overall(seed).items() if k in IMAGE_HEADLINES}
        )
    metrics["seconds"] = round(time.monotonic() - started, 1)
    with project.lock("eval"):
        write_evaluation(project.eval_dir / mixer.run.path.name, metrics, images)
    return metrics


def load_metrics(project: Project, run: str) -> dict[str, Any]:
    """The stored ``eval/<run>/metrics.json``."""
    path = project.eval_dir / run / METRICS_FILE
    if not path.is_file():
        raise CreatureKitError(
            f"Run {run!r} has not been evaluated yet; run `creaturekit eval --run {run}`."
        )
    return json.loads(path.read_text(encoding="utf-8"))


def compare(project: Project, runs: list[str]) -> dict[str, dict[str, float]]:
    """Headline figures of evaluated runs side by side: run -> {seen_emr, novel_emr, ...}."""
    if len(runs) < 2:
        raise CreatureKitError("Give at least two runs to compare.")
    return {run: load_metrics(project, run)["overall"] for run in runs}


def write_evaluation(
    folder: Path, metrics: dict[str, Any], images: dict[str, list[Image.Image]]
) -> None:
    """``metrics.json``, best/worst PNGs and ``report.html``, swapped in all at once."""
    staging = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shown: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for group, pictures in images.items():
        rows = metrics[group]["images"]
        order = sorted(
            range(len(rows)), key=lambda i: (rows[i]["emr"], sum(rows[i]["cosim"].values()))
        )
        picks = [("worst", i) for i in order[:SHOWN]] + [("best", i) for i in order[::-1][:SHOWN]]
        for kind, i in picks:
            name = f"{group}-{kind}-{i:03d}.png"
            pictures[i].save(staging / name)
            shown.setdefault(group, []).append((name, rows[i]))
    fsutil.write_json(staging / METRICS_FILE, metrics)
    fsutil.write_text(staging / REPORT_FILE, _report(metrics, shown))
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


def _report(metrics: dict[str, Any], shown: dict[str, list[tuple[str, dict[str, Any]]]]) -> str:
    esc = html.escape
    parts = sorted({p for g in ("seen", "novel") for p in metrics[g]["per_part"]})
    head = "".join(f"<th>{esc(p)}</th>" for p in parts)
    table = ""
    for group in ("seen", "novel"):
        m = metrics[group]
        cells = "".join(
            f"<td>{m['per_part'][p]['emr']:.2f} / {m['per_part'][p]['cosim']:.2f}</td>"
            if p in m["per_part"]
            else "<td></td>"
            for p in parts
        )
        oracle = f"{m['oracle']['accuracy']:.3f}" if "oracle" in m else "n/a"
        table += (
            f"<tr><th>{group} ({m['combinations']})</th><td>{m['emr']:.3f}</td>"
            f"<td>{m['cosim']:.3f}</td><td>{oracle}</td>{cells}</tr>"
        )
    figures = ""
    for group, items in shown.items():
        figures += f"<h2>{group} combinations: worst and best</h2><div class=g>"
        for name, row in items:
            label = ", ".join(
                f"{p} {k}->{row['recovered'][p]}" for p, k in row["requested"].items()
            )
            figures += (
                f"<figure><img src='{esc(name)}'><figcaption>{esc(label)}</figcaption></figure>"
            )
        figures += "</div>"
    title = f"creaturekit eval: {esc(metrics['run'])}"
    return f"""<!doctype html><meta charset=utf-8><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 8px;border:1px solid #ccc}}
table{{border-collapse:collapse}}.g{{display:flex;flex-wrap:wrap;gap:8px}}
figure{{margin:0;width:140px}}img{{width:128px;image-rendering:pixelated}}
figcaption{{font-size:11px}}</style>
<h1>Evaluation of run {esc(metrics["run"])}</h1>
<p>Generated creatures re-coded with the discovery centroids. EMR: share of requested part
codes recovered exactly; CoSim: cosine similarity of the part's mean feature to the
requested sub-concept centroid (requested code -> recovered code below each picture).</p>
<table><tr><th></th><th>EMR</th><th>CoSim</th><th>oracle (toy)</th>{head}</tr>{table}</table>
<p>Per part: EMR / CoSim. {metrics["images_per_combination"]} image(s) per combination,
seed {metrics["seed"]}, {metrics["seconds"]} s. Oracle: share of requested parts whose
ground-truth variant the toy world's independent oracle reads on the image.
{_discovery_line(metrics)}</p>{_image_table(metrics)}{figures}"""


def _discovery_line(metrics: dict[str, Any]) -> str:
    d = metrics.get("discovery", {})
    line = ""
    if "nmi" in d:
        line += (
            f"Discovery vs ground truth: part NMI {d['nmi']:.1f}, ARI {d['ari']:.1f} "
            f"(x100), within the true foreground NMI {d['fg_nmi']:.1f}. "
        )
    if "keypoints" in d:
        k = d["keypoints"]
        line += (
            f"Discovery at the part keypoints: NMI {k['nmi']:.1f}, ARI {k['ari']:.1f} "
            f"(x100, {k['keypoints']} keypoints)."
        )
    return line


def _image_table(metrics: dict[str, Any]) -> str:
    """The image metrics of both groups and of all images, with what they were computed on."""
    info = metrics.get("image_metrics")
    if info is None:
        return ""
    esc = html.escape

    def cell(figures: dict[str, Any], key: str) -> str:
        value = figures.get(key)
        return f"<td>{value:.3f}</td>" if isinstance(value, float) else "<td>n/a</td>"

    rows = "".join(
        f"<tr><th>{g}</th>{''.join(cell(metrics[g]['image'], k) for k in IMAGE_HEADLINES)}</tr>"
        for g in ("seen", "novel")
    )
    overall = {k: metrics["overall"].get(k) for k in ("fid", "kid")}
    rows += f"<tr><th>all</th><td></td><td></td>{cell(overall, 'fid')}{cell(overall, 'kid')}</tr>"
    clip = (
        f'CLIP score (x100): image vs "{esc(info["clip_text"])}" with {esc(info["clip_model"])}.'
        if info["clip_model"]
        else ""
    )
    skipped = "".join(f" {esc(k)} skipped: {esc(v)}." for k, v in info["skipped"].items())
    return f"""<h2>Image metrics</h2>
<table><tr><th></th><th>similarity</th><th>CLIP score</th><th>FID</th><th>KID</th></tr>
{rows}</table>
<p>Similarity: cosine of each image's {esc(info["image_model"])} embedding to the mean
embedding of the {info["reference_images"]} training images sharing a requested code,
averaged. FID/KID against the training images on {esc(info["fid_model"])} features.
{clip}{skipped}</p>"""
