"""The README's first command: the whole method, offline, on the CPU (``make demo``).

:func:`run_demo` builds the toy-world project (docs/toy-world.md), discovers its parts
with the offline ``effnet-kmeans`` backend, fits a run with the ``toy`` preset on the
bundled toy base model, mixes a few novel creatures (part codes never seen together in
a training image) by part name, evaluates the run, and writes one page,
``DIR/index.html``, that shows it all through relative links. Each stage is skipped when
its output exists and an interrupted fit resumes, so running the demo again finishes
what is missing and rebuilds the page. Without the toy base model, the stages that need
it are skipped (:attr:`DemoResult.missing_model` says why) unless ``full`` is set.

The command is ``creaturekit demo DIR`` (``cli/demo.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from creaturekit import constants as C
from creaturekit import fsutil, htmlpage
from creaturekit.errors import CreatureKitError, DamagedFileError, ModelNotFoundError
from creaturekit.htmlpage import Html, join, markup, page, table_row
from creaturekit.models import BUNDLED, resolve_model
from creaturekit.project import Project, open_project
from creaturekit.toy.dataset import DEFAULT_SIZE

if TYPE_CHECKING:
    from creaturekit.evaluation.metrics import Metrics

PAGE_FILE = "index.html"
RUN = "demo"
#: What :attr:`DemoResult.stages` says about each stage.
DONE, RESUMED, REUSED, SKIPPED = "done", "resumed", "reused", "skipped"


@dataclass
class DemoResult:
    """What one demo run found or produced; paths are inside ``project.root``."""

    project: Project
    page: Path
    stages: dict[str, str] = field(default_factory=dict)  # stage -> DONE, RESUMED, ...
    run: Path | None = None
    mixes: Path | None = None
    metrics: Metrics | None = None
    missing_model: str | None = None  # why fit, mix and eval were skipped


def missing_toy_base_message() -> str:
    """The one sentence shown when the bundled toy base model is not there."""
    return (
        f"The toy base model is not in this copy of creaturekit ({BUNDLED['toy']}), so the "
        "demo stopped after discovery: reinstall creaturekit, train it in a source checkout "
        "with `python -m tools.toy.train_base` (docs/toy-world.md), or give the demo any "
        "Stable-Diffusion-style pipeline folder with `--model PATH`."
    )


def run_demo(
    folder: str | Path = "demo",
    *,
    model: str = "toy",
    species: int = 24,
    per_species: int = 40,
    size: int = DEFAULT_SIZE,
    discover_options: Mapping[str, Any] | None = None,
    fit_options: Mapping[str, Any] | None = None,
    mixes: int = 8,
    combinations: int = 16,
    sample_steps: int | None = None,
    sample_size: int | None = None,
    seed: int = 0,
    full: bool = False,
    notify: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run (or finish) the demo in ``folder``; return what it holds.

    ``species``, ``per_species`` and ``size`` shape a new toy project;
    ``discover_options`` and ``fit_options`` override the project's discovery settings
    and the ``toy`` fit preset; ``mixes`` novel creatures are mixed and ``combinations``
    seen and novel combinations evaluated, sampled with ``sample_steps`` and
    ``sample_size`` (default: the project's mix settings and the fit resolution).
    Without the bundled toy base model (``model="toy"``) fit, mix and eval are skipped,
    or with ``full`` a :class:`ModelNotFoundError` is raised. ``notify`` receives a line
    as each stage starts or is reused.
    """
    say = notify or (lambda _line: None)
    project, made = _toy_project(Path(folder), species, per_species, size, say)
    demo = DemoResult(project, project.root / PAGE_FILE, {"project": made})
    demo.stages["discover"] = _discover(project, discover_options or {}, say)
    demo.missing_model = _missing_model(project, model, full)
    if demo.missing_model is None:
        demo.run, demo.stages["fit"] = _fit(project, model, fit_options or {}, say)
        demo.mixes, demo.stages["mix"] = _mix(project, mixes, seed, sample_steps, sample_size, say)
        demo.metrics, demo.stages["eval"] = _evaluate(
            project, combinations, seed, sample_steps, sample_size, say
        )
    else:
        demo.stages.update(dict.fromkeys(("fit", "mix", "eval"), SKIPPED))
    say(f"Writing the demo page {demo.page}")
    fsutil.write_text(demo.page, render_page(demo))
    return demo


def _toy_project(
    folder: Path, species: int, per_species: int, size: int, say: Callable[[str], None]
) -> tuple[Project, str]:
    from creaturekit.toy.dataset import DATASET, create_toy_project

    exists = (folder / C.CONFIG_NAME).is_file()
    if exists:
        project = open_project(folder)
        records = project.manifest()
        if any(r.dataset != DATASET for r in records):
            raise CreatureKitError(
                f"{folder} holds a project with images of its own, not the toy demo; give "
                "the demo another folder (or delete this one)."
            )
        if records and (project.images_dir / C.TOY_DIR / C.TOY_WORLD_NAME).is_file():
            say(f"Toy project: reusing {folder}")
            return project, REUSED
    say(f"Drawing the toy project in {folder}: {species} species x {per_species} images, {size} px")
    project = create_toy_project(
        folder, species=species, per_species=per_species, size=size, name="demo", force=exists
    )
    return project, DONE


def _discover(project: Project, options: Mapping[str, Any], say: Callable[[str], None]) -> str:
    from creaturekit.discovery.discover import discover
    from creaturekit.discovery.naming import name_parts_by_keypoints
    from creaturekit.discovery.result import RESULT_FILE

    if (project.discovery_dir / RESULT_FILE).is_file():
        say("Discovery: reusing discovery/")
        return REUSED
    say(f"Discovering parts with {project.config.discover.backend}")
    result = discover(project, **options)
    names = name_parts_by_keypoints(project, result)
    if names:
        say("Parts named after the toy world's keypoints: " + ", ".join(names.values()))
    return DONE


def _missing_model(project: Project, model: str, full: bool) -> str | None:
    """None when ``model`` resolves; the reason when the bundled model is absent."""
    try:
        resolve_model(model, project.root)
    except ModelNotFoundError as err:
        if model not in BUNDLED:
            raise
        if full:
            raise ModelNotFoundError(missing_toy_base_message()) from err
        return missing_toy_base_message()
    return None


def _fit(
    project: Project, model: str, options: Mapping[str, Any], say: Callable[[str], None]
) -> tuple[Path, str]:
    from creaturekit.training.checkpoint import list_checkpoints
    from creaturekit.training.fit import fit
    from creaturekit.training.run import run_folder
    from creaturekit.training.trainer import FitInterrupted

    run = run_folder(project, RUN)
    if run.mapper.is_file():
        say(f"Fit: reusing runs/{RUN}/")
        return run.path, REUSED
    resume = bool(list_checkpoints(run.checkpoints))
    say(f"{'Resuming' if resume else 'Fitting'} run {RUN!r} (toy preset) on the base model {model}")
    try:
        fit(project, preset="toy", run=RUN, resume=resume, model=model, **options)
    except FitInterrupted as err:
        saved = list_checkpoints(run.checkpoints)
        where = f"from {saved[-1].name} " if saved else ""
        raise FitInterrupted(
            f"Interrupted; the fit continues {where}when the demo runs again."
        ) from err
    return run.path, RESUMED if resume else DONE


def _mix(
    project: Project,
    n: int,
    seed: int,
    steps: int | None,
    size: int | None,
    say: Callable[[str], None],
) -> tuple[Path, str]:
    from creaturekit.discovery.discover import load_result
    from creaturekit.evaluation.combinations import code_rows, novel_combinations
    from creaturekit.generation.mix import mix
    from creaturekit.generation.requests import Vocabulary
    from creaturekit.training.run import run_folder

    names = Vocabulary(run_folder(project, RUN).vocab(), project.config).by_index
    rows = code_rows(load_result(project))
    # Whole creatures (a code for every part) where discovery found enough of them.
    whole = max(map(len, rows), default=0)
    complete = [r for r in rows if len(r) == whole]
    combos = novel_combinations(complete, n, random.Random(seed)) or novel_combinations(
        rows, n, random.Random(seed)
    )
    if not combos:
        raise CreatureKitError(
            "Every combination of the discovered part codes occurs in a training image, so "
            "there is no novel creature to mix; discover more sub-concepts."
        )
    named = [{names[m]: k for m, k in c.items()} for c in combos]
    existing = _find_mixes(project, named)
    if existing is not None:
        say(f"Mixes: reusing {existing.relative_to(project.root).as_posix()}/")
        return existing, REUSED
    say(f"Mixing {len(combos)} novel creatures by part name")
    requests = [{name: [code] for name, code in combo.items()} for combo in named]
    mixed = mix(project, combinations=requests, run=RUN, n=1, seed=seed, steps=steps, size=size)
    assert mixed.folder is not None  # written by mix
    return mixed.folder, DONE


def _find_mixes(project: Project, combos: Sequence[dict[str, int]]) -> Path | None:
    """The newest ``mixes/`` folder holding exactly ``combos`` (one image each) of the run."""
    wanted = [(RUN, [{"part": p, "code": k} for p, k in c.items()]) for c in combos]
    folders = [p for p in project.mixes_dir.glob("*") if p.is_dir() and p.name[0] != "."]
    for folder in sorted(folders, reverse=True):
        try:
            records = [fsutil.read_json(p) for p in sorted(folder.glob("mix-*.json"))]
            found = [(r["run"], r["codes"]) for r in records]
        except (DamagedFileError, KeyError, TypeError):
            continue  # a damaged sidecar: not a folder to reuse
        if found == wanted:
            return folder
    return None


def _evaluate(
    project: Project,
    combinations: int,
    seed: int,
    steps: int | None,
    size: int | None,
    say: Callable[[str], None],
) -> tuple[Metrics, str]:
    from creaturekit.evaluation.evaluate import METRICS_FILE, evaluate, load_metrics

    if (project.eval_dir / RUN / METRICS_FILE).is_file():
        say(f"Evaluation: reusing eval/{RUN}/")
        return load_metrics(project, RUN), REUSED
    say(f"Evaluating run {RUN!r} on {combinations} seen and {combinations} novel combinations")
    metrics = evaluate(project, RUN, combinations=combinations, seed=seed, steps=steps, size=size)
    return metrics, DONE


# -- the page ------------------------------------------------------------------------
class _Links:
    """Relative links to files of the project; a missing file gives text or nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def link(self, path: Path, text: str) -> Html:
        if not path.exists():
            return htmlpage.text(text)
        return htmlpage.link(path.relative_to(self.root), text)

    def image(self, path: Path, alt: str) -> Html:
        if not path.is_file():
            return Html("")
        return htmlpage.image(path.relative_to(self.root), alt)


def render_page(demo: DemoResult) -> str:
    """The demo page: stages, discovered parts, the run, mixes and metrics."""
    from creaturekit.discovery.discover import load_result
    from creaturekit.discovery.naming import part_table

    links = _Links(demo.project.root)
    parts = part_table(demo.project, load_result(demo.project))
    stages = join(markup("<li>{}: {}</li>", s, state) for s, state in demo.stages.items())
    body = [
        markup(
            "<h1>creaturekit demo: {}</h1>"
            "<p>Drawn toy creatures; their parts discovered without labels; one token per part "
            "variant fitted on a base model; new creatures mixed from parts that never appear "
            "together in a training image; the mixes scored.</p><ul>{}</ul>",
            demo.project.config.project.name,
            stages,
        )
    ]
    if demo.missing_model:
        body.append(markup("<p class=note>{}</p>", demo.missing_model))
    body.append(_parts_section(demo.project, parts, links))
    if demo.run is not None:
        body.append(_run_section(demo.run, links))
    if demo.mixes is not None:
        body.append(_mixes_section(demo.mixes, parts, links))
    if demo.metrics is not None:
        body.append(_metrics_section(demo.project, demo.metrics, links))
    return page("creaturekit demo", join(body))


def _parts_section(project: Project, parts: list[dict[str, Any]], links: _Links) -> Html:
    from creaturekit.discovery.report import REPORT_DIR, REPORT_HTML

    pictures = project.discovery_dir / REPORT_DIR
    rows = join(
        table_row(
            [
                p["index"],
                markup('<a href="#part-{}">{}</a>', p["index"], p["name"]),
                p["subconcepts"],
                markup("{:.1%}", p["coverage"]),
            ]
        )
        for p in parts
    )
    galleries = join(
        markup(
            '<h3 id="part-{}">{}: crops per sub-concept (code)</h3>{}',
            p["index"],
            p["name"],
            links.image(pictures / f"part{p['index']}.png", p["name"]),
        )
        for p in parts
    )
    return markup(
        "<h2>Discovered parts</h2><p>With {}, no labels; the whole {}.</p><table>{}{}</table>{}{}",
        project.config.discover.backend,
        links.link(project.discovery_dir / REPORT_HTML, "discovery report"),
        table_row([], ["index", "name", "sub-concepts", "coverage"]),
        rows,
        links.image(pictures / "overview.png", "parts on sample images"),
        galleries,
    )


def _run_section(run: Path, links: _Links) -> Html:
    from creaturekit.training.run import CONFIG_FILE, LOG_FILE, RunFolder

    folder = RunFolder(run)
    saved = folder.saved_config()
    fit, model = saved["fit"], saved["base_model"]
    log = folder.read_log()
    loss = markup(", last logged loss {:.4f}", log[-1]["loss"]) if log and "loss" in log[-1] else ""
    samples = sorted(folder.samples.glob("*.png"))
    return markup(
        "<h2>Fitted run {name}</h2><p>{steps} steps at {resolution} px on the base model "
        "{model}{loss} ({settings}, {log}).</p>{sample}",
        name=run.name,
        steps=fit["steps"],
        resolution=fit["resolution"],
        model=model,
        loss=loss,
        settings=links.link(run / CONFIG_FILE, "settings"),
        log=links.link(run / LOG_FILE, "log"),
        sample=links.image(samples[-1], "samples during training") if samples else "",
    )


def _mixes_section(mixes: Path, parts: list[dict[str, Any]], links: _Links) -> Html:
    index = {p["name"]: p["index"] for p in parts}
    figures = []
    for sidecar in sorted(mixes.glob("mix-*.json")):
        record = fsutil.read_json(sidecar)
        asked = join(
            (
                markup('<a href="#part-{}">{} {}</a>', index[c["part"]], c["part"], c["code"])
                if c["part"] in index
                else markup("{} {}", c["part"], c["code"])
                for c in record["codes"]
            ),
            ", ",
        )
        figures.append(
            markup(
                "<figure>{}<figcaption>{}</figcaption></figure>",
                links.image(sidecar.with_suffix(".png"), record["prompt"]),
                asked,
            )
        )
    return markup(
        "<h2>Novel creatures</h2><p>Each asked for by part name and code (below the "
        "picture); no training image has this combination of codes ({}).</p>"
        "<div class=g>{}</div>",
        links.link(mixes, mixes.name),
        join(figures),
    )


def _metrics_section(project: Project, metrics: Metrics, links: _Links) -> Html:
    from creaturekit.evaluation.evaluate import REPORT_FILE

    world = metrics.discovery.world if metrics.discovery is not None else {}
    values = {**metrics.overall, **{f"discovery {k}": v for k, v in world.items()}}
    rows = join(
        table_row([markup("{:.3g}", v)], [k])
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    return markup(
        "<h2>Metrics</h2><p>Generated creatures re-coded by discovery: EMR is the share of "
        "requested codes recovered exactly, CoSim the similarity to the requested "
        "sub-concept; in the toy world, the oracle reads the true parts. Best and worst "
        "mixes: the {}.</p><table>{}</table>",
        links.link(project.eval_dir / RUN / REPORT_FILE, "evaluation report"),
        rows,
    )
