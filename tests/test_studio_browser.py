"""The studio in a real headless browser (Debian's chromium driven by Playwright) on a tiny
fitted project: the page loads, a part is renamed, parts are picked, a creature is
generated and shown with its codes and command, and the history lists it.

With ``CREATUREKIT_SCREENSHOTS=DIR`` the test also saves the pages it visits as PNGs, and
with ``CREATUREKIT_STUDIO_PROJECT=DIR`` it works on a copy of that fitted project instead
(``make screenshots`` takes the ones in docs/images/ on the demo project).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright

from creaturekit.discovery.discover import load_result
from creaturekit.discovery.report import write_report
from creaturekit.project import open_project
from creaturekit.studio.app import LOOPBACK_HOSTS, create_app, url_with_token
from creaturekit.studio.server import bind
from tests.helpers import fit_runs

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser_path() -> str:
    """The installed chromium, or skip (``.ci/run`` installs it where it runs as root)."""
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    pytest.skip("no chromium installed (apt-get install chromium; .ci/run does as root)")


@pytest.fixture(scope="module")
def live(
    discovered: Path, tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A studio served by uvicorn on a free loopback port: (tokened URL, project root)."""
    import uvicorn

    browser_path()
    folder = tmp_path_factory.mktemp("browser")
    if given := os.environ.get("CREATUREKIT_STUDIO_PROJECT"):  # e.g. the demo, for screenshots
        root = folder / "project"
        shutil.copytree(given, root, ignore=shutil.ignore_patterns("mixes", ".creaturekit.lock"))
        project = open_project(root)
    else:
        root = fit_runs(discovered, folder / "toy", tiny_sd, {"r1": {}})
        project = open_project(root)
        write_report(project.discovery_dir, project, load_result(project))
    sock = bind("127.0.0.1", 0)
    app = create_app(project, allowed_hosts=list(LOOPBACK_HOSTS))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the studio did not start"
        time.sleep(0.05)
    try:
        yield url_with_token("127.0.0.1", sock.getsockname()[1], app.state.studio.token), root
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture
def page(live: tuple[str, Path]) -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path(), args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(120_000)
            errors: list[str] = []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.errors = errors
            yield tab
        finally:
            browser.close()


def shoot(page: Any, name: str) -> None:
    folder = os.environ.get("CREATUREKIT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"studio-{name}.png"), full_page=False)


def test_rename_pick_generate_and_find_it_in_history(live: tuple[str, Path], page: Any) -> None:
    url, root = live
    base = url.split("/?")[0]
    page.goto(url)
    assert page.locator("h1").inner_text() == open_project(root).config.project.name
    shoot(page, "overview")

    tiny = not os.environ.get("CREATUREKIT_STUDIO_PROJECT")
    name = "head" if tiny else open_project(root).config.part_name(0)  # the demo's are set
    page.goto(f"{base}/parts")
    section = page.locator("#part0")
    section.locator("input[name=name]").fill(name)
    section.locator("button").click()
    playwright.expect(section.locator(".result")).to_have_text(re.compile("^Renamed"))
    assert section.locator(".name").inner_text() == name
    assert page.locator("#legend0 .pname").inner_text() == name
    assert open_project(root).config.part_name(0) == name
    assert page.locator("#p0c1 .crops img").count() >= 1
    shoot(page, "parts")

    page.goto(f"{base}/compose")
    page.locator(f'fieldset[data-part="{name}"] label[title^="code 1:"]').click()
    page.locator('fieldset[data-part="bg"] label[title^="code 0:"]').click()
    if tiny:
        page.fill("input[name=steps]", "2")
    page.fill("input[name=n]", "2")
    page.click("#generate")
    page.locator("figure.creature").nth(1).wait_for()
    codes = page.locator("figure.creature .codes").all_inner_texts()
    assert codes == [f"{name}:1 bg:0", f"{name}:1 bg:0"]
    command = page.locator("figure.creature code.command").first.inner_text()
    assert command.startswith("creaturekit mix -C") and f"--{name} 1 --bg 0" in command
    images = page.locator("figure.creature img")
    deadline = time.monotonic() + 30
    while not images.evaluate_all("all => all.every(i => i.complete && i.naturalWidth > 0)"):
        assert time.monotonic() < deadline, "the generated images did not load"
        time.sleep(0.1)
    page.locator("h1").scroll_into_view_if_needed()
    shoot(page, "compose")

    folders = [p.name for p in (root / "mixes").iterdir()]
    assert len(folders) == 1
    page.goto(f"{base}/history?part={name}&code=1")
    assert page.locator(f'section[data-mix="{folders[0]}"]').count() == 1
    assert page.locator(f'section[data-mix="{folders[0]}"] img').count() == 2
    shoot(page, "history")
    page.goto(f"{base}/runs")
    assert page.locator("table.runs th").first.inner_text() == "run"
    shoot(page, "runs")
    assert page.errors == []
