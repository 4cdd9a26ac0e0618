"""Every value put into a page is escaped, whatever file it came from (issue 22)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from creaturekit import fsutil
from creaturekit.demo import DemoResult, render_page
from creaturekit.discovery.discover import load_result
from creaturekit.discovery.report import render_html
from creaturekit.evaluation.evaluate import write_evaluation
from creaturekit.evaluation.metrics import (
    DiscoveryFigures,
    GroupScores,
    ImageFigures,
    ImageMetricsInfo,
    ImageScores,
    Metrics,
    OracleScores,
    PartScores,
)
from creaturekit.htmlpage import Html, href, markup, page
from creaturekit.project import open_project

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
TAG = "<img src=x onerror=alert(1)>"  # for file and folder names, which cannot hold "/"
ESCAPED_TAG = "&lt;img src=x onerror=alert(1)&gt;"


def assert_escaped(page_text: str, *, tag: bool = False) -> None:
    assert SCRIPT not in page_text and "<script" not in page_text
    assert ESCAPED in page_text
    if tag:
        assert TAG not in page_text and "onerror=alert(1)>" not in page_text
        assert ESCAPED_TAG in page_text


@pytest.fixture
def tampered(discovered: Path, tmp_path: Path) -> Path:
    """A copy of the discovered project whose name in creaturekit.toml is a script."""
    root = tmp_path / "proj"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs", "mixes", "eval"))
    project = open_project(root)
    project.config.project.name = SCRIPT
    project.save_config()
    return root


def test_helpers_escape_everything_but_markup() -> None:
    built = markup("<p>{}{}{:.2f}{}</p>", SCRIPT, Html("<b>ok</b>"), 0.5, SCRIPT)
    assert built == f"<p>{ESCAPED}<b>ok</b>0.50{ESCAPED}</p>"
    # A value of the wrong type for its format (a tampered file) is shown, escaped.
    assert markup("{:.3f}", SCRIPT) == ESCAPED
    assert markup("{x[0]}", x=[SCRIPT]) == ESCAPED
    assert href('javascript:alert("1")') == "javascript%3Aalert%28%221%22%29"
    assert href(f"mixes/{TAG}.png") == "mixes/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.png"
    assert_escaped(page(SCRIPT, markup("{}", SCRIPT)))


def test_discovery_report_escapes_names_and_result_values(tampered: Path) -> None:
    project = open_project(tampered)
    assert project.config.project.name == SCRIPT
    project.config.parts.names = {"0": SCRIPT}  # past the toml's validation
    result = load_result(project)
    result.backend = result.params["model"] = SCRIPT
    result.notes = [SCRIPT]
    result.parts[0].subconcepts = SCRIPT  # type: ignore[assignment]
    result.foreground.update(rule=SCRIPT, threshold=SCRIPT, images_without_foreground=SCRIPT)
    result.facing = {"rule": SCRIPT, "groupings": SCRIPT, "changed_per_round": [SCRIPT]}
    text = render_html(project, result)
    assert_escaped(text)
    assert text.count(ESCAPED) >= 10
    assert '<img src="report/part0.png"' in text  # the page itself is unchanged


def _metrics(part: str) -> Metrics:
    """Metrics whose every shown value is a script (numbers too: a tampered file)."""
    wrong: Any = SCRIPT  # where a number belongs
    row = ImageScores(requested={part: 1}, recovered={part: 0}, cosim={part: 0.5}, emr=0.5)
    group = GroupScores(
        combinations=wrong,
        emr=0.5,
        cosim=0.25,
        per_part={part: PartScores(emr=0.5, cosim=0.25, requests=1)},
        images=[row],
        oracle=OracleScores(accuracy=wrong, per_part={}),
        image=ImageFigures(similarity=0.5),
    )
    return Metrics(
        run=SCRIPT,
        seed=wrong,
        images_per_combination=wrong,
        creaturekit_version=SCRIPT,
        seen=group,
        novel=group,
        overall={"fid": 1.0},
        seconds=wrong,
        image_metrics=ImageMetricsInfo(
            image_model=SCRIPT,
            fid_model=SCRIPT,
            clip_model=SCRIPT,
            clip_text=SCRIPT,
            reference_images=wrong,
            skipped={SCRIPT: SCRIPT},
        ),
    )


def test_evaluation_report_escapes_metrics_and_part_names(tmp_path: Path) -> None:
    folder = tmp_path / "eval" / "r1"
    picture = Image.new("RGB", (4, 4))
    write_evaluation(folder, _metrics(SCRIPT), {"seen": [picture], "novel": [picture]})
    text = (folder / "report.html").read_text()
    assert_escaped(text)
    assert text.count(ESCAPED) >= 15
    assert '<img src="seen-best-000.png"' in text


def test_demo_page_escapes_run_settings_mixes_and_metrics(tampered: Path) -> None:
    project = open_project(tampered)
    run = project.runs_dir / TAG
    (run / "samples").mkdir(parents=True)
    (run / "config.toml").write_text(
        f"base_model = {SCRIPT!r}\n[fit]\nsteps = {SCRIPT!r}\nresolution = {SCRIPT!r}\n"
    )
    fsutil.write_jsonl(run / "log.jsonl", [{"step": 1, "loss": SCRIPT}])
    Image.new("RGB", (4, 4)).save(run / "samples" / f"{TAG}.png")
    mixes = project.mixes_dir / TAG
    mixes.mkdir(parents=True)
    record = {"run": TAG, "prompt": SCRIPT, "codes": [{"part": "part0", "code": SCRIPT}]}
    fsutil.write_json(mixes / f"mix-{TAG}.json", record)
    Image.new("RGB", (4, 4)).save(mixes / f"mix-{TAG}.png")
    record = {"run": TAG, "prompt": "p", "codes": [{"part": SCRIPT, "code": 1}]}
    fsutil.write_json(mixes / "mix-001.json", record)
    demo = DemoResult(
        project,
        project.root / "index.html",
        {"project": SCRIPT},
        run=run,
        mixes=mixes,
        metrics=replace(
            _metrics("part0"), overall={SCRIPT: 0.5}, discovery=DiscoveryFigures({SCRIPT: 1.0})
        ),
        missing_model=SCRIPT,
    )
    text = render_page(demo)
    assert_escaped(text, tag=True)
    assert text.count(ESCAPED) >= 10
    encoded = "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
    assert f'href="runs/{encoded}/config.toml"' in text
    assert f'src="mixes/{encoded}/mix-{encoded}.png"' in text
