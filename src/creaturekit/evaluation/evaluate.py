"""``eval`` on a project: generate requested combinations with a run, re-code, score, report."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from creaturekit import constants as C
from creaturekit import fsutil
from creaturekit.errors import CreatureKitError
from creaturekit.evaluation.combinations import Combination, code_rows, evaluation_draw
from creaturekit.evaluation.image_metrics import IMAGE_HEADLINES, ImageScorer
from creaturekit.evaluation.keypoints import keypoint_scores
from creaturekit.evaluation.metrics import (
    GROUPS,
    DiscoveryFigures,
    GroupScores,
    ImageScores,
    Metrics,
)
from creaturekit.evaluation.recoding import recoding_scores
from creaturekit.evaluation.reference import Reference, find_reference
from creaturekit.generation.mix import Mixer
from creaturekit.htmlpage import Html, image, join, markup, page, table_row
from creaturekit.paths import check_name
from creaturekit.progress import track
from creaturekit.project import Project
from creaturekit.version import __version__

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
SHOWN = 4  # best and worst images shown in the report


class Creatures(Protocol):
    """What ``eval`` scores: draws ``n`` images of a requested combination."""

    @property
    def name(self) -> str:
        """The name its figures are stored under (``eval/<name>/``)."""
        ...

    def __call__(
        self, combo: Combination, n: int, seed: int, **generation: Any
    ) -> list[Image.Image]: ...


@dataclass
class RunCreatures:
    """A fitted run drawing each requested combination by part name."""

    mixer: Mixer
    names: dict[int, str]  # part index -> the project's part name

    @property
    def name(self) -> str:
        return self.mixer.run.path.name

    def __call__(
        self, combo: Combination, n: int, seed: int, **generation: Any
    ) -> list[Image.Image]:
        parts = {self.names[m]: [k] for m, k in combo.items()}
        return self.mixer(parts, n=n, seed=seed, **generation).images

    def distinctness(self, result: Any) -> dict[str, Any]:
        """:func:`distinctness` of the run's codes."""
        return distinctness(self.mixer, self.names, result)


def distinctness(mixer: Mixer, names: dict[int, str], result: Any) -> dict[str, Any]:
    """:func:`creaturekit.training.distinctness.distinctness` of a loaded run's codes (by
    the project's part ``names``), the probe on ``result``'s training images (the run's
    ``probe_images``)."""
    from creaturekit.training import distinctness as distinct
    from creaturekit.training.data import examples_from_discovery
    from creaturekit.training.recognition import code_recognition, load_probes

    parts = mixer.fitted.vocab.parts
    fit = mixer.run.info().fit
    pipe = mixer.pipe

    def recognise() -> list[float | None]:
        examples = examples_from_discovery(mixer.project.images_dir, result)
        return code_recognition(
            mixer.conditioning,
            pipe.unet,
            pipe.scheduler,
            mixer.mapper,
            load_probes(examples, pipe.vae, fit.resolution, fit.probe_images),
            [p.subconcepts for p in parts],
            mixer.project.config.project.category,
            resolution=fit.resolution,
        )

    step = fsutil.safetensors_metadata(mixer.run.mapper).get("step", "")
    return distinct.distinctness(
        mixer.mapper,
        [names[p.index] for p in parts],
        int(step) if step.isdigit() else None,
        recognise if fit.probe_images else None,
    )


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
    model: str | None = None,
    creatures: Creatures | None = None,
) -> Metrics:
    """Score a run on seen and novel combinations; write ``eval/<run>/``; return the metrics.

    Unset options come from ``[eval]`` in creaturekit.toml (``guidance`` and ``negative``
    from ``[mix]``). The image metrics' backbones
    (:mod:`creaturekit.evaluation.image_metrics`) are loaded and the training images
    embedded before any image is generated. ``model`` loads the run on another base
    model than the one it records (the user's own hub id or path). ``creatures`` scores
    another image source over the same combinations instead of ``run`` (e.g. a baseline
    fitted on another vocabulary, :mod:`creaturekit.evaluation.baseline`).
    """
    from creaturekit.discovery.discover import load_discoverer, load_result
    from creaturekit.discovery.naming import part_names
    from creaturekit.generation.requests import check_generation

    settings = project.config.eval
    n = combinations or settings.combinations
    per = per_combination or settings.images_per_combination
    seed = settings.seed if seed is None else seed
    check_generation(seed=seed, n=per, steps=steps, guidance=guidance, size=size)
    guidance = project.config.mix.guidance if guidance is None else guidance
    negative = project.config.mix.negative if negative is None else negative
    generation = {"steps": steps, "guidance": guidance, "negative": negative, "size": size}
    started = time.monotonic()
    result = load_result(project)
    scorer = _image_scorer(
        project,
        result,
        image_metrics,
        {
            "image_model": image_model or None,
            "fid_model": fid_model or None,
            "clip_model": clip_model,
        },
    )
    names = part_names(project, result)
    creatures = creatures or RunCreatures(Mixer(project, run, model=model), names)
    discoverer = load_discoverer(project.discovery_dir)
    reference = find_reference(project, result)
    distinct = creatures.distinctness(result) if isinstance(creatures, RunCreatures) else {}
    discovery = _discovery_figures(project, result, reference)
    images: dict[str, list[Image.Image]] = {}
    scores: dict[str, GroupScores] = {}
    draw = evaluation_draw(code_rows(result), n, seed)
    for group in GROUPS:
        combos = draw[group]
        requested = [combo for combo in combos for _ in range(per)]
        generated = [
            image
            for j, combo in enumerate(
                track(combos, f"Generating {group} combinations", len(combos))
            )
            for image in creatures(combo, per, seed + j * per, **generation)
        ]
        scores[group] = _group_scores(
            discoverer, len(combos), requested, generated, names, reference, scorer, seed
        )
        images[group] = generated
    metrics = Metrics(
        run=creatures.name,
        seed=seed,
        images_per_combination=per,
        creaturekit_version=__version__,
        seen=scores["seen"],
        novel=scores["novel"],
        overall=_overall(scores, scorer, seed),
        seconds=round(time.monotonic() - started, 1),
        guidance=guidance,
        negative=negative,
        code_similarity=distinct.get("code_similarity"),
        code_recognition=distinct.get("code_recognition"),
        distinctness_warning=distinct.get("warning"),
        discovery=discovery,
        image_metrics=scorer.describe() if scorer is not None else None,
    )
    with project.lock("eval"):
        write_evaluation(project.eval_dir / creatures.name, metrics, images)
    return metrics


def _image_scorer(
    project: Project, result: Any, enabled: bool | None, backbones: dict[str, str | None]
) -> ImageScorer | None:
    """The image metrics' scorer, ready (training images embedded), unless turned off."""
    if not (project.config.eval.image_metrics if enabled is None else enabled):
        return None
    chosen = {k: _backbone(project, given, k) for k, given in backbones.items()}
    scorer = ImageScorer(project, **chosen)
    scorer.prepare(result)
    return scorer


def _discovery_figures(
    project: Project, result: Any, reference: Reference | None
) -> DiscoveryFigures | None:
    """Discovery against a world's ground truth and against keypoints, where they exist."""
    world = dict(reference.discovery) if reference is not None else {}
    keypoints = keypoint_scores(project, result)
    if not world and keypoints is None:
        return None
    return DiscoveryFigures(world=world, keypoints=keypoints)


def _group_scores(
    discoverer: Any,
    combinations: int,
    requested: list[Combination],
    generated: list[Image.Image],
    names: dict[int, str],
    reference: Reference | None,
    scorer: ImageScorer | None,
    seed: int,
) -> GroupScores:
    """EMR/CoSim by re-coding, the world's judgement and the image metrics of one group."""
    recoding = None
    if generated:
        coding = discoverer.encode(generated)
        centroids = discoverer.hierarchy_.sub_centroids
        recoding = recoding_scores(requested, coding.codes, coding.part_features, centroids, names)
    return GroupScores(
        combinations=combinations,
        emr=recoding.emr if recoding else 0.0,
        cosim=recoding.cosim if recoding else 0.0,
        per_part=recoding.per_part if recoding else {},
        images=recoding.images if recoding else [],
        oracle=reference.score(requested, generated, names) if reference is not None else None,
        image=scorer.group(requested, generated, names, seed) if scorer is not None else None,
    )


def _overall(
    groups: dict[str, GroupScores], scorer: ImageScorer | None, seed: int
) -> dict[str, float | None]:
    """The headline figures of every group, flat (``novel_emr``, ``seen_fid``...)."""
    overall: dict[str, float | None] = {}
    for g, scores in groups.items():
        overall |= {f"{g}_emr": scores.emr, f"{g}_cosim": scores.cosim}
    for g, scores in groups.items():
        if scores.oracle is not None:
            overall[f"{g}_oracle_accuracy"] = scores.oracle.accuracy
    if scorer is not None:
        for g, scores in groups.items():
            image = scores.image
            if image is not None:
                overall |= {
                    f"{g}_{k}": image.headline(k)
                    for k in IMAGE_HEADLINES
                    if image.headline(k) is not None
                }
        overall |= {k: v for k, v in scorer.overall(seed).items() if k in IMAGE_HEADLINES}
    return overall


def _backbone(project: Project, given: str | None, setting: str) -> str:
    """An eval backbone: the user's (``given``), else the ``[eval]`` setting, confined to the
    project like every path a project file names."""
    from creaturekit.evaluation.backbones import DISCOVERY, INCEPTION
    from creaturekit.models import project_model, trust_model_path

    if given is not None:
        trust_model_path(given)
        return given
    value = getattr(project.config.eval, setting)
    if value in (DISCOVERY, INCEPTION):
        return str(value)
    where = f"eval.{setting} in {C.CONFIG_NAME}"
    return project_model(value, project.root, where, "--" + setting.replace("_", "-"))


def load_metrics(project: Project, run: str) -> Metrics:
    """The stored ``eval/<run>/metrics.json`` (a damaged file is named)."""
    path = project.eval_dir / check_name(run, "Run name") / METRICS_FILE
    if not path.is_file():
        raise CreatureKitError(
            f"Run {run!r} has not been evaluated yet; run `creaturekit eval --run {run}`."
        )
    return Metrics.read(path)


def compare(project: Project, runs: list[str]) -> dict[str, dict[str, float | None]]:
    """Headline figures of evaluated runs side by side: run -> {seen_emr, novel_emr, ...}."""
    if len(runs) < 2:
        raise CreatureKitError("Give at least two runs to compare.")
    return {run: load_metrics(project, run).overall for run in runs}


def write_evaluation(folder: Path, metrics: Metrics, images: dict[str, list[Image.Image]]) -> None:
    """``metrics.json``, best/worst PNGs and ``report.html``, swapped in all at once."""
    staging = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shown: dict[str, list[tuple[str, ImageScores]]] = {}
    for group, pictures in images.items():
        rows = metrics.group(group).images
        order = sorted(range(len(rows)), key=lambda i: (rows[i].emr, sum(rows[i].cosim.values())))
        picks = [("worst", i) for i in order[:SHOWN]] + [("best", i) for i in order[::-1][:SHOWN]]
        for kind, i in picks:
            name = f"{group}-{kind}-{i:03d}.png"
            pictures[i].save(staging / name)
            shown.setdefault(group, []).append((name, rows[i]))
    fsutil.write_json(staging / METRICS_FILE, metrics.to_dict())
    fsutil.write_text(staging / REPORT_FILE, _report(metrics, shown))
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


def _report(metrics: Metrics, shown: dict[str, list[tuple[str, ImageScores]]]) -> str:
    parts = sorted({p for g in GROUPS for p in metrics.group(g).per_part})
    table = []
    for group in GROUPS:
        m = metrics.group(group)
        cells = [
            markup("{:.2f} / {:.2f}", m.per_part[p].emr, m.per_part[p].cosim)
            if p in m.per_part
            else ""
            for p in parts
        ]
        oracle = markup("{:.3f}", m.oracle.accuracy) if m.oracle is not None else "n/a"
        first = [markup("{:.3f}", m.emr), markup("{:.3f}", m.cosim), oracle]
        table.append(table_row([*first, *cells], [f"{group} ({m.combinations})"]))
    figures = []
    for group, items in shown.items():
        pictures = (
            markup(
                "<figure>{}<figcaption>{}</figcaption></figure>",
                image(name, ""),
                ", ".join(f"{p} {k}->{row.recovered[p]}" for p, k in row.requested.items()),
            )
            for name, row in items
        )
        figures.append(
            markup(
                "<h2>{} combinations: worst and best</h2><div class=g>{}</div>",
                group,
                join(pictures),
            )
        )
    body = markup(
        """<h1>Evaluation of run {run}</h1>{warning}
<p>Generated creatures re-coded with the discovery centroids. EMR: share of requested part
codes recovered exactly; CoSim: cosine similarity of the part's mean feature to the
requested sub-concept centroid (requested code -> recovered code below each picture).</p>
<table>{head}{table}</table>
<p>Per part: EMR / CoSim. {per} image(s) per combination,
seed {seed}, {seconds} s. Oracle: share of requested parts whose
ground-truth variant the toy world's independent oracle reads on the image.
{discovery}</p>{images}{figures}""",
        run=metrics.run,
        warning=(
            markup("<p><strong>Warning:</strong> {}</p>", metrics.distinctness_warning)
            if metrics.distinctness_warning
            else ""
        ),
        head=table_row([], ["", "EMR", "CoSim", "oracle (toy)", *parts]),
        table=join(table),
        per=metrics.images_per_combination,
        seed=metrics.seed,
        seconds=metrics.seconds,
        discovery=_discovery_line(metrics),
        images=_image_table(metrics),
        figures=join(figures),
    )
    return page(f"creaturekit eval: {metrics.run}", body)


def _discovery_line(metrics: Metrics) -> str:
    if metrics.discovery is None:
        return ""
    d, k = metrics.discovery.world, metrics.discovery.keypoints
    line = ""
    if "nmi" in d:
        line += (
            f"Discovery vs ground truth: part NMI {_one(d['nmi'])}, ARI {_one(d.get('ari'))} "
            f"(x100), within the true foreground NMI {_one(d.get('fg_nmi'))}. "
        )
    if k is not None:
        line += (
            f"Discovery at the part keypoints: NMI {_one(k.nmi)}, ARI {_one(k.ari)} "
            f"(x100, {k.keypoints} keypoints)."
        )
    return line


def _one(value: object) -> str:
    """A figure with one decimal; n/a where it could not be computed."""
    return f"{value:.1f}" if isinstance(value, (int, float)) else "n/a"


def _image_table(metrics: Metrics) -> Html:
    """The image metrics of both groups and of all images, with what they were computed on."""
    info = metrics.image_metrics
    if info is None:
        return Html("")

    def cells(values: list[float | None]) -> list[object]:
        return [markup("{:.3f}", v) if isinstance(v, float) else "n/a" for v in values]

    rows = []
    for g in GROUPS:
        image = metrics.group(g).image
        values = [image.headline(k) if image else None for k in IMAGE_HEADLINES]
        rows.append(table_row(cells(values), [g]))
    rows.append(
        table_row(["", "", *cells([metrics.overall.get(k) for k in ("fid", "kid")])], ["all"])
    )
    clip = (
        markup('CLIP score (x100): image vs "{}" with {}.', info.clip_text, info.clip_model)
        if info.clip_model
        else ""
    )
    skipped = join(markup(" {} skipped: {}.", k, v) for k, v in info.skipped.items())
    return markup(
        """<h2>Image metrics</h2>
<table>{head}
{rows}</table>
<p>Similarity: cosine of each image's {image_model} embedding to the mean
embedding of the {reference} training images sharing a requested code,
averaged. FID/KID against the training images on {fid_model} features.
{clip}{skipped}</p>""",
        head=table_row([], ["", "similarity", "CLIP score", "FID", "KID"]),
        rows=join(rows),
        image_model=info.image_model,
        reference=info.reference_images,
        fid_model=info.fid_model,
        clip=clip,
        skipped=skipped,
    )
