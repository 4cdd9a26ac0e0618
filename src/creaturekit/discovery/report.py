"""The human view of a discovery: ``report.html`` plus PNGs showing what every part is.

* ``report/overview.png``: sample images with every part as a coloured overlay;
* ``report/part<i>.png``: for each part, a row per sub-concept with crops of that part
  from a few member images. This is how a user learns what part 3 is, and names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from creaturekit import fsutil
from creaturekit.discovery.result import DiscoveryResult
from creaturekit.htmlpage import Html, image, join, markup, page, table_row
from creaturekit.project import Project

REPORT_HTML = "report.html"
REPORT_DIR = "report"
THUMB = 160
CROP = 96
SAMPLES = 8
ROWS = 8
PER_ROW = 5
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195),
]  # fmt: skip
BACKGROUND_COLOUR = (40, 40, 40)


def part_colour(index: int, is_background: bool) -> tuple[int, int, int]:
    """The colour of a part in every picture of the report."""
    return BACKGROUND_COLOUR if is_background else PALETTE[index % len(PALETTE)]


def _image(project: Project, row: dict[str, Any], size: int) -> Image.Image:
    with Image.open(project.images_dir / row["file"]) as im:
        return im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def _upsample(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The patch-grid ``mask`` at image ``size`` (width, height)."""
    return np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))


def overlay(image: Image.Image, mask: np.ndarray, colours: np.ndarray) -> Image.Image:
    """``image`` (any aspect) with each patch tinted by its part's colour."""
    labels = _upsample(mask, image.size)
    tint = colours[np.minimum(labels, len(colours) - 1)]
    blended = 0.5 * np.asarray(image, np.float32) + 0.5 * tint
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8))


def _sheet(tiles: list[Image.Image], per_row: int, size: int) -> Image.Image:
    rows = max(1, -(-len(tiles) // per_row))
    sheet = Image.new("RGB", (per_row * (size + 4), rows * (size + 4)), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % per_row) * (size + 4), (i // per_row) * (size + 4)))
    return sheet


def part_crop(image: Image.Image, mask: np.ndarray, part: int) -> Image.Image:
    """The part's bounding box in ``image`` (any aspect; other parts dimmed), uncropped
    when the part is absent from the image."""
    labels = _upsample(mask, image.size) == part
    ys, xs = np.nonzero(labels)
    if not len(xs):
        return image
    arr = np.asarray(image, np.float32) * np.where(labels, 1.0, 0.35)[..., None]
    dimmed = Image.fromarray(arr.astype(np.uint8))
    pad = max(image.size) // 16
    box = (
        max(0, xs.min() - pad),
        max(0, ys.min() - pad),
        min(image.width, xs.max() + 1 + pad),
        min(image.height, ys.max() + 1 + pad),
    )
    return dimmed.crop(box)


def _gallery(project: Project, result: DiscoveryResult, part: int) -> Image.Image:
    key = str(part)
    members: dict[int, list[int]] = {}
    for i, row in enumerate(result.codes):
        if key in row["codes"]:
            members.setdefault(row["codes"][key], []).append(i)
    biggest = sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:ROWS]
    label_w = 70
    sheet = Image.new(
        "RGB", (label_w + PER_ROW * (CROP + 4), max(1, len(biggest)) * (CROP + 4)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for r, (code, idx) in enumerate(biggest):
        y = r * (CROP + 4)
        draw.text((4, y + CROP // 2 - 12), f"code {code}\n{len(idx)} img", fill="black")
        for c, i in enumerate(idx[:PER_ROW]):
            image = _image(project, result.codes[i], THUMB)
            crop = part_crop(image, result.masks[i], part)
            sheet.paste(
                crop.resize((CROP, CROP), Image.Resampling.BICUBIC), (label_w + c * (CROP + 4), y)
            )
    return sheet


def write_report(folder: Path, project: Project, result: DiscoveryResult) -> tuple[str, ...]:
    """Write ``report.html`` and ``report/*.png`` into ``folder``; return the names written."""
    pictures = folder / REPORT_DIR
    pictures.mkdir(parents=True, exist_ok=True)
    colours = np.array(
        [part_colour(p.index, p.is_background) for p in result.parts] + [(255, 255, 255)],
        np.float32,
    )
    n = len(result.codes)
    picks = sorted({int(i) for i in np.linspace(0, n - 1, min(SAMPLES, n))})
    tiles = [
        overlay(_image(project, result.codes[i], THUMB), result.masks[i], colours) for i in picks
    ]
    _sheet(tiles, 4, THUMB).save(pictures / "overview.png")
    for p in result.parts:
        _gallery(project, result, p.index).save(pictures / f"part{p.index}.png")
    fsutil.write_text(folder / REPORT_HTML, render_html(project, result))
    return REPORT_DIR, REPORT_HTML


def refresh_page(project: Project, result: DiscoveryResult) -> bool:
    """Rewrite ``discovery/report.html`` with the current part names (its PNGs name none).

    Returns False when the project has no report (discovery ran without one).
    """
    path = project.discovery_dir / REPORT_HTML
    if not path.is_file():
        return False
    fsutil.write_text(path, render_html(project, result))
    return True


def render_html(project: Project, result: DiscoveryResult) -> str:
    """The report page (PNGs referenced relatively, so the folder can move)."""
    rows, sections = [], []
    for p in result.parts:
        name = project.config.part_name(p.index, p.is_background)
        swatch = markup(
            '<span class="sw" style="background:rgb({},{},{})"></span>',
            *part_colour(p.index, p.is_background),
        )
        rows.append(
            table_row(
                [
                    p.index,
                    markup("{}{}", swatch, name),
                    markup("{:.1%}", p.coverage),
                    markup("{:.0%}", p.presence),
                    p.subconcepts,
                ]
            )
        )
        hint = (
            ""
            if p.is_background
            else markup("<p>Name it: <code>creaturekit parts name {} NAME</code></p>", p.index)
        )
        sections.append(
            markup(
                "<h3>{swatch}Part {i}: {name}</h3>{hint}{image}",
                swatch=swatch,
                i=p.index,
                name=name,
                hint=hint,
                image=image(f"{REPORT_DIR}/part{p.index}.png", f"sub-concepts of part {p.index}"),
            )
        )
    fg, timing = result.foreground, result.timing
    notes = join(markup("<li>{}</li>", n) for n in result.notes) or Html("<li>none</li>")
    body = markup(
        """<h1>Parts discovered in {project}</h1>
<p>Backend <b>{backend}</b>, model <code>{model}</code>,
{images} images, patch grid {grid[0]}x{grid[1]}, features
{features_s:.1f} s, clustering {clustering_s:.1f} s.</p>
<h2>Parts</h2>
<table><tr><th>index</th><th>name</th><th>coverage</th><th>present in</th><th>sub-concepts</th></tr>
{rows}</table>
<p>Names come from creaturekit.toml as of this report; each part's sub-concepts (rows) are shown
below with crops of the part from member images.</p>
<h2>Sample images</h2>{overview}
<h2>Sub-concepts per part</h2>{sections}
<h2>Foreground choice</h2><p>{rule}: threshold
{threshold:.3f}; score quantiles (5, 25, 50, 75, 95%) {evidence}; foreground share
{share:.1%}; images without foreground
{without}.</p>
{facing}
<h2>Notes</h2><ul>{notes}</ul>""",
        project=project.config.project.name,
        backend=result.backend,
        model=str(result.params.get("model")),
        images=len(result.codes),
        grid=result.grid,
        features_s=timing.get("features_s", 0),
        clustering_s=timing.get("clustering_s", 0),
        rows=join(rows),
        overview=image(f"{REPORT_DIR}/overview.png", "part overlays"),
        sections=join(sections),
        rule=fg.get("rule", ""),
        threshold=fg.get("threshold", 0),
        evidence=join((markup("{:.3f}", q) for q in fg.get("score_quantiles", [])), ", "),
        share=fg.get("foreground_share", 0),
        without=fg.get("images_without_foreground", 0),
        facing=_facing_html(result.facing),
        notes=notes,
    )
    return page(markup("Discovery: {}", project.config.project.name), body)


def _facing_html(facing: dict[str, Any]) -> Html:
    """The facing decision's evidence (absent in results made before it existed)."""
    if not facing:
        return Html("")
    return markup(
        "<h2>Facing</h2><p>{rule}: {groupings} grouping(s); images re-decided per round: "
        "{changed}; changed from the first guess: {first}; still undecided at the end: "
        "{unsettled}.</p>",
        rule=facing.get("rule", ""),
        groupings=facing.get("groupings", 0),
        changed=join(facing.get("changed_per_round", []), ", ") or "none",
        first=facing.get("changed_from_first_guess", 0),
        unsettled=facing.get("unsettled", 0),
    )
