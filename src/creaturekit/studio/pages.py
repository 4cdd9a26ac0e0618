"""The studio's pages, rendered on the server with :mod:`creaturekit.htmlpage`.

Every value from the project (part names, file names, prompts, sidecars, metrics) goes
through :func:`~creaturekit.htmlpage.markup`, so none of it can become markup; the
page's script (``static/studio.js``) builds what it adds with ``textContent`` only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from creaturekit.discovery.result import DiscoveryResult
from creaturekit.generation.history import MixFolder, record_codes
from creaturekit.htmlpage import Html, join, markup, table_row
from creaturekit.images import ImageRecord
from creaturekit.lock import describe_holder
from creaturekit.project import Project
from creaturekit.studio.catalog import CodeView, PartView

NAV = (("/", "Overview"), ("/parts", "Parts"), ("/compose", "Compose"),
       ("/history", "History"), ("/runs", "Runs"))  # fmt: skip
IMAGES_SHOWN = 200  # images shown before discovery


def url(*segments: object, **query: object) -> str:
    """A studio URL: every segment percent-encoded (a name can add no ``/``, ``?`` or ``#``)."""
    path = "/" + "/".join(quote(str(s), safe="") for s in segments)
    given = {k: v for k, v in query.items() if v is not None and v != ""}
    return f"{path}?{urlencode(given)}" if given else path


def shell(project: Project, title: str, active: str, body: Html, token: str) -> str:
    """The page frame: navigation, the lock banner, and the token for the script."""
    links = join(
        markup('<a href="{}"{}>{}</a>', path, Html(' class="on"' if path == active else ""), label)
        for path, label in NAV
    )
    holder = project.lock_holder()
    banner = (
        markup(
            '<p class="note" id="lock">The project is being changed by {}; the studio shows '
            "it as it is and generates when it is done.</p>",
            describe_holder(holder),
        )
        if holder
        else Html("")
    )
    return markup(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="studio-token" content="{token}">'
        "<title>{title} · {name} · creaturekit studio</title>"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/studio.css">'
        '<script src="/static/studio.js" defer></script></head><body>'
        '<header><b>creaturekit studio</b> <span class="muted">{name}</span>'
        "<nav>{links}</nav></header>{banner}<main>{body}</main></body></html>\n",
        token=token,
        title=title,
        name=project.config.project.name,
        links=links,
        banner=banner,
        body=body,
    )


def message(title: str, text: str) -> Html:
    """A page body that only says something (an error or what to run next)."""
    return markup('<h1>{}</h1><p class="note">{}</p>', title, text)


# -- overview and images ----------------------------------------------------------------
def overview(project: Project, result: DiscoveryResult | None, runs: list[str], mixes: int) -> Html:
    images = len(project.manifest())
    steps = [
        ("Images", f"{images} imported", "creaturekit init DIR --images SRC"),
        (
            "Discovery",
            f"{len(result.parts)} parts in {len(result.codes)} images" if result else "not run",
            "creaturekit discover",
        ),
        (
            "Runs",
            f"{len(runs)} fitted: {', '.join(runs)}" if runs else "none fitted",
            "creaturekit fit",
        ),
        ("Mixes", f"{mixes} in mixes/", "creaturekit mix or the Compose page"),
    ]
    rows = join(
        table_row([state, markup("<code>{}</code>", how)], [what]) for what, state, how in steps
    )
    nxt = (
        "Next: run `creaturekit discover` to find the parts of these images."
        if result is None
        else "Next: run `creaturekit fit` to learn the part tokens; then compose here."
        if not runs
        else "Everything is ready: pick parts on the Compose page."
    )
    return markup(
        '<h1>{}</h1><table class="stages">{}</table><p class="note" id="next">{}</p>',
        project.config.project.name,
        rows,
        nxt,
    )


def images_page(records: list[ImageRecord]) -> Html:
    """Before discovery: the imported images and what to run."""
    figures = join(
        markup(
            '<figure><img src="{}" alt="{}" loading="lazy">'
            "<figcaption>#{} {}</figcaption></figure>",
            url("thumb", f"{r.id}.png"),
            r.file,
            r.id,
            r.file,
        )
        for r in records[:IMAGES_SHOWN]
    )
    more = f" (the first {IMAGES_SHOWN} shown)" if len(records) > IMAGES_SHOWN else ""
    return markup(
        '<h1>Images</h1><p class="note" id="next">No parts yet: run <code>creaturekit discover'
        "</code> to find the parts of these {} images{}; this page then shows every part.</p>"
        '<div class="g">{}</div>',
        len(records),
        more,
        figures,
    )


# -- parts ------------------------------------------------------------------------------
def _swatch(colour: tuple[int, int, int]) -> Html:
    return markup('<span class="sw" style="background:rgb({},{},{})"></span>', *colour)


def _code_row(part: PartView, code: CodeView) -> Html:
    crops = join(
        markup(
            '<img src="{}" alt="part {} code {} in image {}" loading="lazy">',
            url("crop", part.index, f"{row}.png"),
            part.index,
            code.code,
            row,
        )
        for row in code.shown()
    )
    return markup(
        '<div class="code" id="p{}c{}"><div class="label"><b>code {}</b><br>{} image(s)<br>'
        '<span class="muted">{:.0%} of the part\'s images; covers {:.0%} of an image</span>'
        '</div><div class="crops">{}</div></div>',
        part.index,
        code.code,
        code.code,
        len(code.members),
        code.share,
        code.area,
        crops or Html('<span class="muted">no member image</span>'),
    )


def parts_page(parts: list[PartView], samples: list[int]) -> Html:
    """Every part, every sub-concept, and the part overlay on sample images."""
    legend = join(
        markup(
            '<li id="legend{}">{}<span class="pname">{}</span>{}</li>',
            p.index,
            _swatch(p.colour),
            p.name,
            " (background)" if p.is_background else "",
        )
        for p in parts
    )
    overlays = join(
        markup('<img src="{}" alt="parts of image {}">', url("overlay", f"{row}.png"), row)
        for row in samples
    )
    sections = []
    for p in parts:
        rename = (
            markup('<p class="muted">The background is always named <code>bg</code>.</p>')
            if p.is_background
            else markup(
                '<form class="rename" data-index="{i}"><label>Name <input name="name" '
                'value="{name}" required maxlength="40"></label> <button>Rename</button> '
                '<span class="result" role="status"></span></form>',
                i=p.index,
                name=p.name,
            )
        )
        sections.append(
            markup(
                '<section class="part" id="part{i}"><h2>{sw}Part {i}: <span class="name">{name}'
                "</span>{bg}</h2>{rename}<p>{k} sub-concepts; holds {cov:.1%} of all image "
                "patches, present in {pres:.0%} of the images.</p>{rows}</section>",
                i=p.index,
                sw=_swatch(p.colour),
                name=p.name,
                bg=Html(' <span class="badge">background</span>') if p.is_background else "",
                rename=rename,
                k=len(p.codes),
                cov=p.coverage,
                pres=p.presence,
                rows=join(_code_row(p, c) for c in p.codes),
            )
        )
    return markup(
        '<h1>Parts</h1><ul class="legend">{}</ul><h2>Parts on sample images</h2>'
        '<div class="g overlays">{}</div>{}',
        legend,
        overlays,
        join(sections),
    )


# -- compose ----------------------------------------------------------------------------
def _picker(part: PartView) -> Html:
    options = [
        markup(
            '<label class="opt"><input type="radio" name="pick-{}" value="" checked> not given'
            "</label>",
            part.index,
        ),
        markup(
            '<label class="opt"><input type="radio" name="pick-{}" value="random"> random</label>',
            part.index,
        ),
    ]
    for code in part.codes:
        picture = (
            markup('<img src="{}" alt="">', url("crop", part.index, f"{code.shown(1)[0]}.png"))
            if code.members
            else Html('<span class="empty"></span>')
        )
        options.append(
            markup(
                '<label class="opt thumb" title="code {c}: {n} image(s)"><input type="radio" '
                'name="pick-{i}" value="{c}">{img}<span>{c}</span></label>',
                i=part.index,
                c=code.code,
                n=len(code.members),
                img=picture,
            )
        )
    blend = join(markup('<option value="{0}">{0}</option>', c.code) for c in part.codes)
    return markup(
        '<fieldset class="part" data-part="{name}"><legend>{sw}{name}</legend>'
        '<div class="opts">{opts}</div><label>blend with <select class="blend">'
        '<option value="">none</option>{blend}</select></label> '
        '<label>sweep codes <input class="sweep" placeholder="e.g. 0,2,5" size="10"></label>'
        "</fieldset>",
        name=part.name,
        sw=_swatch(part.colour),
        opts=join(options),
        blend=blend,
    )


def compose_page(
    project: Project,
    parts: list[PartView],
    runs: list[str],
    run: str | None,
    why_not: str | None,
    can_compose: bool,
) -> Html:
    """The compose form, with why nothing can be composed (yet) when it says so; the
    parts are shown either way."""
    settings = project.config.mix
    run_options = join(
        markup('<option value="{0}"{1}>{0}</option>', r, Html(" selected" if r == run else ""))
        for r in runs
    )
    disabled = Html("") if can_compose else Html(" disabled")
    notice = markup('<p class="note" id="why-not">{}</p>', why_not) if why_not else Html("")
    return markup(
        '<h1>Compose</h1>{notice}<div class="compose"><form id="compose">'
        '<div class="pickers">{pickers}</div>'
        "<fieldset><legend>Start from a training image</legend><label>image id "
        '<input name="like" type="number" min="0"></label> <span class="muted">its codes '
        "fill the parts not given here</span></fieldset>"
        "<fieldset><legend>Prompt and settings</legend>"
        '<label class="wide">prompt (optional; <code>&lt;NAME:CODE&gt;</code> adds a part) '
        '<input name="prompt" placeholder="a &lt;head:3&gt; creature in snow"></label>'
        '<label class="wide">negative prompt <input name="negative" placeholder="{negative}">'
        "</label>"
        '<label>run <select name="run">{runs}</select></label> '
        '<label>seed <input name="seed" type="number" min="0" value="0"></label> '
        '<label>images <input name="n" type="number" min="1" max="16" value="1"></label> '
        '<label>steps <input name="steps" type="number" min="1" placeholder="{steps}"></label> '
        '<label>guidance <input name="guidance" type="number" step="0.5" min="0" '
        'placeholder="{guidance}"></label></fieldset>'
        '<p><button id="generate"{disabled}>Generate</button> '
        '<button type="button" id="cancel" disabled>Cancel</button> '
        '<progress id="progress" max="1" value="0"></progress> '
        '<span id="status" role="status"></span></p></form>'
        '<div id="results" class="results" aria-live="polite"></div></div>',
        notice=notice,
        pickers=join(_picker(p) for p in parts),
        negative=settings.negative,
        runs=run_options,
        steps=settings.steps,
        guidance=settings.guidance,
        disabled=disabled,
    )


# -- history ----------------------------------------------------------------------------
def _codes_text(record: dict[str, Any]) -> str:
    return " ".join(f"{p}:{c}" for p, c in record_codes(record)) or "(no codes)"


def _mix_figures(mix: MixFolder) -> Html:
    return join(
        markup(
            '<figure><img src="{src}" alt="{name}" loading="lazy"><figcaption>'
            '<span class="codes">{codes}</span><br>seed {seed}{blank}<details><summary>sidecar'
            "</summary><pre>{sidecar}</pre></details></figcaption></figure>",
            src=url("files", "mixes", mix.name, image),
            name=image,
            codes=_codes_text(record),
            seed=record.get("seed", "?"),
            blank=" · blank" if record.get("blank") else "",
            sidecar=json.dumps(record, indent=1, default=str),
        )
        for image, record in zip(mix.images, mix.records, strict=True)
    )


def _mix_section(mix: MixFolder, compare: bool = True) -> Html:
    first = mix.records[0] if mix.records else {}
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime(mix.path.stat().st_mtime))
    damaged = (
        markup('<p class="note">Unreadable sidecar(s): {}</p>', ", ".join(mix.damaged))
        if mix.damaged
        else ""
    )
    tools = (
        markup(
            '<label><input type="checkbox" name="m" value="{0}" form="compare"> compare</label> '
            '<button type="button" class="delete" data-mix="{0}">Delete</button>',
            mix.name,
        )
        if compare
        else ""
    )
    return markup(
        '<section class="mix" data-mix="{name}"><h3><a href="{link}">{name}</a> '
        '<span class="muted">{made} · {count} image(s) · run {run} · {prompt}</span></h3>'
        '{tools}{damaged}<div class="g">{figures}</div></section>',
        name=mix.name,
        link=url("history", mix.name),
        made=made,
        count=len(mix.images),
        run=first.get("run", "?"),
        prompt=first.get("prompt", ""),
        tools=tools,
        damaged=damaged,
        figures=_mix_figures(mix),
    )


def history_page(
    mixes: list[MixFolder], names: Iterable[str], part: str | None, code: int | None
) -> Html:
    """Every mix folder (newest first), filterable by part and code."""
    options = join(
        markup('<option value="{0}"{1}>{0}</option>', n, Html(" selected" if n == part else ""))
        for n in names
    )
    shown = join(_mix_section(m) for m in mixes) or Html(
        '<p class="note" id="empty">No mixes here yet: compose some, or run '
        "<code>creaturekit mix</code>.</p>"
    )
    return markup(
        '<h1>History</h1><form method="get" action="/history" class="filter">'
        '<label>part <select name="part"><option value="">any</option>{options}</select></label> '
        '<label>code <input name="code" type="number" min="0" value="{code}"></label> '
        "<button>Filter</button></form>"
        '<form id="compare" method="get" action="/compare"><button>Compare checked side by side'
        "</button></form>{shown}",
        options=options,
        code="" if code is None else code,
        shown=shown,
    )


def compare_page(mixes: list[MixFolder]) -> Html:
    """Mix folders side by side."""
    columns = join(markup('<div class="column">{}</div>', _mix_section(m, False)) for m in mixes)
    return markup('<h1>Compare</h1><div class="side">{}</div>', columns)


def mix_page(mix: MixFolder) -> Html:
    return markup("<h1>Mix {}</h1>{}", mix.name, _mix_section(mix))


# -- runs -------------------------------------------------------------------------------
def _figure(metrics: dict[str, Any], key: str) -> object:
    """One evaluation figure: three decimals; n/a where it could not be computed (null in
    ``metrics.json``); empty where the run's evaluation has no such figure."""
    if key not in metrics:
        return ""
    value = metrics[key]
    return markup("{:.3f}", value) if isinstance(value, (int, float)) else "n/a"


def runs_page(runs: list[dict[str, Any]]) -> Html:
    """Runs and their evaluation figures side by side."""
    if not runs:
        return message("Runs", "No runs yet: run `creaturekit fit` to learn the part tokens.")
    keys = sorted({k for r in runs for k in r["metrics"]})
    header = ["run", "state", "base model", "steps", "evaluation", *keys]
    rows = []
    for r in runs:
        report = (
            markup('<a href="{}">report</a>', url("files", "eval", r["name"], "report.html"))
            if r["report"]
            else (r["eval_error"] or "not evaluated (`creaturekit eval --run NAME`)")
        )
        figures = [_figure(r["metrics"], k) for k in keys]
        rows.append(
            table_row([r["state"], r["base_model"], r["steps"], report, *figures], [r["name"]])
        )
    head = join(markup("<th>{}</th>", h) for h in header)
    best = join(
        markup(
            '<section><h3>{name}: best novel creatures of its evaluation</h3><div class="g">{pics}'
            "</div></section>",
            name=r["name"],
            pics=join(
                markup('<img src="{}" alt="{}">', url("files", "eval", r["name"], p), p)
                for p in r["pictures"]
            ),
        )
        for r in runs
        if r["pictures"]
    )
    return markup(
        '<h1>Runs</h1><table class="runs"><tr>{}</tr>{}</table>'
        '<p class="muted">Figures are the <code>overall</code> ones of <code>eval/RUN/metrics.json'
        "</code>; the report has the rest.</p>{}",
        head,
        join(rows),
        best,
    )
