"""``creaturekit studio`` through its HTTP API on tiny real projects: the token, safe file
serving, every part and sub-concept, renaming, generation by the worker (written as
``mix`` writes it), the history, the runs, and bad input of every kind."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from creaturekit import fsutil
from creaturekit.cli import app as cli
from creaturekit.discovery.discover import load_result
from creaturekit.discovery.report import REPORT_HTML, part_crop, write_report
from creaturekit.project import init_project, open_project
from creaturekit.studio.app import TOKEN_HEADER, create_app
from creaturekit.studio.server import bind, is_loopback
from tests.helpers import GuardedRunner, fit_runs, older_metrics, write_image

TOKEN = "test-token-123"
AUTH = {TOKEN_HEADER: TOKEN}
FAST = {"steps": 2}
XSS = "<img src=x onerror=alert(1)>"


def studio(root: Path, **options: Any) -> TestClient:
    """A client of the studio of ``root`` that has opened the tokened URL once."""
    app = create_app(open_project(root), token=TOKEN, **options)
    client = TestClient(app, base_url="http://127.0.0.1")
    return client


def opened(client: TestClient) -> TestClient:
    assert client.get(f"/?token={TOKEN}").status_code == 200  # sets the cookie
    return client


def finish(client: TestClient, job: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while job["state"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        job = client.get(f"/api/jobs/{job['id']}?wait=1").json()  # as the page asks
    return job


def generate(client: TestClient, **request: Any) -> dict[str, Any]:
    response = client.post("/api/generate", json={**FAST, **request}, headers=AUTH)
    assert response.status_code == 202, response.text
    return finish(client, response.json())


def listing(root: Path) -> list[str]:
    """Everything in ``mixes/`` (hidden staging folders included)."""
    return sorted(os.listdir(root / "mixes")) if (root / "mixes").exists() else []


@pytest.fixture(scope="module")
def fitted(discovered: Path, tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = fit_runs(discovered, tmp_path_factory.mktemp("studio") / "proj", tiny_sd, {"r1": {}})
    project = open_project(root)
    write_report(project.discovery_dir, project, load_result(project))
    return root


@pytest.fixture(scope="module")
def client(fitted: Path) -> Iterator[TestClient]:
    with studio(fitted) as c:
        yield opened(c)


# -- the token and the host ---------------------------------------------------------------
def test_every_request_needs_the_token(fitted: Path) -> None:
    with studio(fitted, preload=False) as c:
        for path in ("/", "/parts", "/files/creaturekit.toml", "/api/status", "/crop/0/0.png"):
            assert c.get(path).status_code == 403, path
        assert "open the URL" in c.get("/").text
        assert c.get("/?token=wrong").status_code == 403
        page = c.get(f"/?token={TOKEN}")
        assert page.status_code == 200 and page.cookies.get("creaturekit_studio") == TOKEN
        assert "strict" in page.headers["set-cookie"].lower()
        assert "httponly" in page.headers["set-cookie"].lower()
        assert c.get("/parts").status_code == 200  # the cookie from now on
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_no_change_without_the_token_header(fitted: Path) -> None:
    before = (fitted / "creaturekit.toml").read_text()
    mixes = listing(fitted)
    with studio(fitted, preload=False) as c:
        opened(c)  # the cookie alone (what another site's form would send) changes nothing
        assert c.post("/api/parts/0/name", json={"name": "head"}).status_code == 403
        bad = {TOKEN_HEADER: "nope"}
        assert c.post("/api/parts/0/name", json={"name": "head"}, headers=bad).status_code == 403
        assert c.post("/api/generate", json={"parts": {"part0": [[0]]}}).status_code == 403
        assert c.delete("/api/mixes/20260101-000000").status_code == 403
        assert c.post("/api/jobs/1/cancel").status_code == 403
    assert (fitted / "creaturekit.toml").read_text() == before
    assert listing(fitted) == mixes


def test_host_header_is_checked_on_loopback(fitted: Path) -> None:
    app = create_app(open_project(fitted), token=TOKEN, allowed_hosts=["127.0.0.1"], preload=False)
    with TestClient(app, base_url="http://evil.example") as c:
        assert c.get(f"/?token={TOKEN}").status_code == 400  # DNS rebinding
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get(f"/?token={TOKEN}").status_code == 200


# -- files ---------------------------------------------------------------------------------
def test_only_files_inside_the_project_are_served(fitted: Path, tmp_path: Path) -> None:
    secret = write_image(tmp_path / "secret.png")
    link = fitted / "mixes-link.png"
    link.symlink_to(secret)
    try:
        with studio(fitted, preload=False) as c:
            opened(c)
            image = open_project(fitted).manifest()[0].file
            ok = c.get(f"/files/images/{image}")
            assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
            assert ok.headers["Content-Security-Policy"].startswith("sandbox")
            report = c.get("/files/discovery/report.html")
            assert (
                report.status_code == 200 and "sandbox" in report.headers["Content-Security-Policy"]
            )
            for path in (
                "/files/../secret.png",
                "/files/%2e%2e/secret.png",
                "/files/images/%2e%2e/%2e%2e/secret.png",
                "/files/images/..%2f..%2fsecret.png",
                f"/files/{secret}",
                f"/files/%2F{str(secret).lstrip('/')}",
                "/files/creaturekit.toml",  # not a picture or page
                "/files/.creaturekit.lock",
                "/files/runs/r1/mapper.safetensors",
                "/files/mixes-link.png",  # a link leading out of the project
                "/files/images/nothing.png",
                "/files/",
            ):
                response = c.get(path)
                assert response.status_code in (403, 404), path
                assert secret.read_bytes() not in response.content
    finally:
        link.unlink()


# -- parts -----------------------------------------------------------------------------------
def test_parts_page_shows_every_part_and_sub_concept(client: TestClient, fitted: Path) -> None:
    result = load_result(open_project(fitted))
    page = client.get("/parts").text
    for p in result.parts:
        assert f'id="part{p.index}"' in page
        for k in range(p.subconcepts):
            assert f'id="p{p.index}c{k}"' in page
    assert "background" in page and page.count('src="/overlay/') == len(result.codes[:8])
    members = [i for i, r in enumerate(result.codes) if "0" in r["codes"]]
    crop = client.get(f"/crop/0/{members[0]}.png")
    assert crop.status_code == 200 and Image.open(io.BytesIO(crop.content))
    assert client.get("/overlay/0.png").headers["content-type"] == "image/png"
    assert client.get("/crop/9/0.png").status_code == 404
    assert client.get("/crop/0/999.png").status_code == 404
    assert client.get("/crop/x/0.png").status_code == 404


def test_crops_keep_the_aspect_ratio() -> None:
    image = Image.new("RGB", (200, 100), "white")
    mask = np.zeros((4, 4), np.uint8)
    mask[:, 1:3] = 1  # the middle half of a wide image: taller than wide at this aspect
    crop = part_crop(image, mask, 1)
    assert crop.size[1] == 100 and 50 <= crop.size[0] <= 130
    assert part_crop(image, mask, 7).size == (200, 100)  # absent part: the whole image


def test_rename_updates_settings_report_and_page(client: TestClient, fitted: Path) -> None:
    renamed = client.post("/api/parts/0/name", json={"name": "head"}, headers=AUTH)
    assert renamed.status_code == 200, renamed.text
    assert open_project(fitted).config.part_name(0) == "head"
    assert "head" in (fitted / "discovery" / REPORT_HTML).read_text()
    assert '<span class="name">head</span>' in client.get("/parts").text
    for index, name, why in (
        (9, "wing", "There is no part 9"),
        (2, "wing", "background"),
        (1, XSS, "single word"),
        (1, "part0", "default name of another part"),
    ):
        bad = client.post(f"/api/parts/{index}/name", json={"name": name}, headers=AUTH)
        assert bad.status_code >= 400 and why in bad.json()["error"], bad.text
    assert XSS not in client.get("/parts").text
    assert client.post("/api/parts/1/name", content=b"{", headers=AUTH).status_code == 400
    client.post("/api/parts/0/name", json={"name": "part0"}, headers=AUTH)


def test_cli_rename_rebuilds_the_report_and_shows_in_the_studio(
    fitted: Path, tmp_path: Path
) -> None:
    root = tmp_path / "p"
    shutil.copytree(fitted, root)
    with studio(root, preload=False) as c:
        opened(c)
        assert '<span class="name">tail</span>' not in c.get("/parts").text
        result = GuardedRunner().invoke(cli, ["parts", "-C", str(root), "name", "1", "tail"])
        assert result.exit_code == 0, result.output
        assert "tail" in (root / "discovery" / REPORT_HTML).read_text()
        assert '<span class="name">tail</span>' in c.get("/parts").text  # the open studio


# -- compose ----------------------------------------------------------------------------------
def test_generate_writes_what_mix_writes_and_the_command_repeats_it(
    client: TestClient, fitted: Path
) -> None:
    job = generate(client, parts={"part0": [[1]], "bg": [[0]]}, seed=3, n=2)
    assert job["state"] == "done", job
    folder = fitted / "mixes" / job["folder"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "contact-sheet.png",
        *[f"mix-{i:03d}.{e}" for i in range(2) for e in ("json", "png")],
    ]
    assert job["records"][1]["codes"] == [{"part": "part0", "code": 1}, {"part": "bg", "code": 0}]
    assert json.loads((folder / "mix-001.json").read_text())["seed"] == 4
    assert client.get(f"/api/jobs/{job['id']}?wait=x").status_code == 400
    shown = client.get(f"/files/mixes/{job['folder']}/mix-000.png")
    assert shown.status_code == 200
    words = shlex.split(job["command"])
    assert words[:2] == ["creaturekit", "mix"] and "--part0" in words and "--run" in words
    again = GuardedRunner().invoke(cli, [*words[1:], "--json"])
    assert again.exit_code == 0, again.output
    cli_folder = Path(json.loads(again.stdout)["folder"])
    for i in range(2):
        a = np.asarray(Image.open(folder / f"mix-{i:03d}.png"))
        b = np.asarray(Image.open(cli_folder / f"mix-{i:03d}.png"))
        assert np.array_equal(a, b)


def test_random_like_prompt_blend_and_sweep(client: TestClient, fitted: Path) -> None:
    drawn = generate(client, random=["part0", "part1"], parts={"bg": [[1]]})
    assert drawn["state"] == "done", drawn
    codes = {c["part"]: c["code"] for c in drawn["records"][0]["codes"]}
    assert (
        set(codes) == {"part0", "part1", "bg"} and f"--part0 {codes['part0']}" in drawn["command"]
    )
    image = load_result(open_project(fitted)).codes[0]["id"]
    like = generate(client, like=image, parts={"bg": [[0]]})
    assert like["state"] == "done" and f"--like {image}" in like["command"], like
    prompt = generate(client, prompt=f"{XSS} <part0:1> creature")
    assert prompt["state"] == "done", prompt
    blend = generate(client, parts={"part0": [[0], [1]]})
    assert [c["code"] for c in blend["records"][0]["codes"]] == [0, 1]
    swept = generate(client, parts={"part0": [[0, 1]]})
    assert len(swept["images"]) == 2 and "--part0 0,1" in swept["command"]
    history = client.get("/history").text
    assert XSS not in history and "&lt;img src=x onerror=alert(1)&gt;" in history


@pytest.mark.parametrize(
    ("request_body", "status", "why"),
    [
        ({"parts": {"wing": [[1]]}}, "failed", "Unknown part 'wing'"),
        ({"parts": {"part0": [[7]]}}, "failed", "use 0 to 1"),
        ({"random": ["wing"]}, "failed", "Unknown part 'wing'"),
        ({"parts": {"part0": [[0]]}, "run": "nope"}, "failed", "There is no run 'nope'"),
        ({"parts": {"part0": [[0]]}, "run": "../r1"}, "failed", "not allowed"),
        ({"like": 9999}, "failed", "No discovered image has id 9999"),
        ({"prompt": "a <part0:> bird"}, "failed", "is not a part request"),
        ({"parts": {"part0": [[0]]}, "guidance": -1}, "failed", "--guidance"),
        ({"parts": {"part0": [[0]]}, "steps": 100}, "failed", "--steps must be below 100"),
    ],
)
def test_bad_requests_fail_with_a_clear_message(
    client: TestClient, fitted: Path, request_body: dict[str, Any], status: str, why: str
) -> None:
    before = listing(fitted)
    job = generate(client, **request_body)
    assert job["state"] == status and why in job["message"], job
    assert listing(fitted) == before


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ([1], "JSON object"),
        ({"parts": {"part0": 1}}, "lists of code lists"),
        ({"parts": {"part0": [["1"]]}}, "lists of code lists"),
        ({"parts": {"part0": [[0]]}, "seed": "x"}, "whole number"),
        ({"parts": {"part0": [[0]]}, "guidance": "nan"}, "a number"),
        ({"parts": {"part0": [[0]]}, "colour": 1}, "Unknown field"),
        ({}, "at least one part"),
        ({"parts": {"part0": [[0, 1]]}, "n": 40}, "at most 64"),
    ],
)
def test_malformed_requests_are_refused(client: TestClient, body: Any, why: str) -> None:
    response = client.post("/api/generate", json=body, headers=AUTH)
    assert response.status_code == 400 and why in response.json()["error"], response.text


def test_two_tabs_generating_at_once_both_finish(client: TestClient) -> None:
    jobs: list[dict[str, Any]] = []

    def tab(code: int) -> None:
        jobs.append(generate(client, parts={"part0": [[code]]}, seed=code))

    tabs = [threading.Thread(target=tab, args=(c,)) for c in (0, 1)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join()
    assert [j["state"] for j in jobs] == ["done", "done"]
    assert len({j["folder"] for j in jobs}) == 2


def test_cancel_and_stop_mid_generation_write_nothing(fitted: Path) -> None:
    before = listing(fitted)
    slow = {"parts": {"part0": [[0]]}, "steps": 50, "n": 16}  # 800 steps: seconds
    with studio(fitted) as c:
        opened(c)
        worker = c.app.state.studio.worker  # type: ignore[attr-defined]
        first = worker.job(c.post("/api/generate", json=slow, headers=AUTH).json()["id"])
        second = worker.job(c.post("/api/generate", json=slow, headers=AUTH).json()["id"])
        wait_until(lambda: first.steps_done > 0)
        assert c.post(f"/api/jobs/{first.id}/cancel", headers=AUTH).status_code == 200
        job = finish(c, first.to_dict())
        assert job["state"] == "cancelled" and "nothing was written" in job["message"]
        wait_until(lambda: second.steps_done > 0)
    # leaving the block stops the server while the second job is generating
    assert second.state == "cancelled"
    assert listing(fitted) == before  # no folder, no staging left
    assert c.get("/api/jobs/999", headers=AUTH).status_code == 404


def wait_until(condition: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_running_fit_is_shown_and_not_broken(client: TestClient, fitted: Path) -> None:
    lock = fitted / ".creaturekit.lock"
    holder = {"command": "fit", "pid": 1, "host": socket.gethostname(), "started": time.time()}
    lock.write_text(json.dumps(holder))
    try:
        assert "being changed by `creaturekit fit`" in client.get("/compose").text
        assert client.get("/api/status").json()["lock"]["command"] == "fit"
        job = generate(client, parts={"part0": [[0]]})
        assert job["state"] == "failed" and "creaturekit fit" in job["message"]
        assert json.loads(lock.read_text()) == holder  # the fit's lock is untouched
        refused = client.delete("/api/mixes/20990101-000000", headers=AUTH)
        assert refused.status_code == 409 and "creaturekit fit" in refused.json()["error"]
    finally:
        lock.unlink()


# -- history and runs --------------------------------------------------------------------------
def test_history_lists_cli_mixes_filters_and_deletes_only_ours(
    client: TestClient, fitted: Path
) -> None:
    result = GuardedRunner().invoke(
        cli, ["mix", "-C", str(fitted), "--part0", "1", "--steps", "2", "--json"]
    )
    name = Path(json.loads(result.stdout)["folder"]).name
    assert f'data-mix="{name}"' in client.get("/history").text
    assert f'data-mix="{name}"' in client.get("/history?part=part0&code=1").text
    assert f'data-mix="{name}"' not in client.get("/history?part=part1&code=1").text
    assert client.get(f"/history/{name}").status_code == 200
    assert client.get(f"/compare?m={name}&m={name}").text.count('class="column"') == 2
    mine = fitted / "mixes" / "20260101-000000"
    mine.mkdir()
    (mine / "contact-sheet.png").write_bytes(b"x")
    (mine / "notes.txt").write_text("my own file")
    for bad in ("20260101-000000", "..", "%2e%2e", "nope", f"{name}%2f..%2f.."):
        response = client.delete(f"/api/mixes/{bad}", headers=AUTH)
        assert response.status_code == 404, bad
    assert (mine / "notes.txt").read_text() == "my own file"
    assert client.get("/history/20260101-000000").status_code == 404
    shutil.rmtree(mine)
    assert client.delete(f"/api/mixes/{name}", headers=AUTH).status_code == 200
    assert not (fitted / "mixes" / name).exists()
    assert f'data-mix="{name}"' not in client.get("/history").text


def test_runs_page_shows_eval_figures(client: TestClient, fitted: Path) -> None:
    assert "not evaluated" in client.get("/runs").text
    folder = fitted / "eval" / "r1"
    folder.mkdir(parents=True)
    figures = {"novel_emr": 0.25, "novel_fid": None, XSS: 1.0}  # null: not computable
    fsutil.write_json(folder / "metrics.json", older_metrics(figures))
    write_image(folder / "novel-best-000.png")
    try:
        page = client.get("/runs").text
        assert "0.250" in page and "novel_emr" in page and XSS not in page
        assert "<td>n/a</td>" in page and "None" not in page
        assert 'src="/files/eval/r1/novel-best-000.png"' in page
        assert client.get("/files/eval/r1/novel-best-000.png").status_code == 200
        (folder / "metrics.json").write_text("{")
        assert "damaged" in client.get("/runs").text.lower()
    finally:
        shutil.rmtree(fitted / "eval")


# -- projects at earlier stages, damaged ones -------------------------------------------------
def test_before_discovery_shows_images(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_image(photos / f"{XSS}.png", size=(192, 64))
    write_image(photos / "b.png", seed=1)
    root = tmp_path / "p"
    init_project(root, images=photos)
    with studio(root) as c:
        opened(c)
        page = c.get("/parts").text
        assert "creaturekit discover" in page and XSS not in page and "onerror" in page
        assert "creaturekit discover" in c.get("/compose").text
        ids = {r.file: r.id for r in open_project(root).manifest()}
        wide = next(i for f, i in ids.items() if "onerror" in f)
        thumb = Image.open(io.BytesIO(c.get(f"/thumb/{wide}.png").content))
        assert abs(thumb.size[0] / thumb.size[1] - 3) < 0.1  # the aspect ratio is kept
        assert c.get("/thumb/99.png").status_code == 404
        assert "No mixes here yet" in c.get("/history").text
        assert "No runs yet" in c.get("/runs").text
        job = generate(c, parts={"part0": [[0]]})
        assert job["state"] == "failed" and "discover" in job["message"]


def test_before_fit_shows_parts_and_says_why_not(discovered: Path, tmp_path: Path) -> None:
    root = tmp_path / "nofit"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs"))
    with studio(root) as c:
        opened(c)
        page = c.get("/compose").text
        assert "No fitted run yet" in page and 'id="generate" disabled' in page
        assert 'data-part="part0"' in page
        job = generate(c, parts={"part0": [[0]]})
        assert job["state"] == "failed" and "creaturekit fit" in job["message"]


def test_a_deleted_image_and_another_discovery(fitted: Path, tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(fitted, root, ignore=shutil.ignore_patterns("mixes"))
    result = load_result(open_project(root))
    (root / "images" / result.codes[0]["file"]).unlink()
    other = root / "runs" / "r2"
    shutil.copytree(root / "runs" / "r1", other)
    vocab = json.loads((other / "vocab.json").read_text())
    (other / "vocab.json").write_text(json.dumps({**vocab, "discovery_stamp": "other"}))
    with studio(root, preload=False) as c:
        opened(c)
        assert c.get("/parts").status_code == 200
        missing = c.get("/overlay/0.png")
        assert missing.status_code == 404 and "is missing from the project" in missing.text
        job = generate(c, parts={"part0": [[0]]}, run="r2")
        assert job["state"] == "failed" and "another discovery result" in job["message"]


# -- the command ---------------------------------------------------------------------------------
def test_command_without_the_extra_says_what_to_install(
    fitted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    result = GuardedRunner().invoke(cli, ["studio", "-C", str(fitted), "--no-open"])
    assert result.exit_code == 1 and "pip install 'creaturekit[studio]'" in result.stderr


def test_bind_and_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    sock = bind("127.0.0.1", 0)
    try:
        from creaturekit.errors import CreatureKitError

        with pytest.raises(CreatureKitError, match="in use; choose another with --port"):
            bind("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()


def test_the_command_serves_until_interrupted(fitted: Path) -> None:
    import signal
    import subprocess
    import sys

    import httpx

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "creaturekit", "studio", "-C", str(fitted)]
    server = subprocess.Popen(
        [*command, "--no-open", "--port", "0", "--host", "0.0.0.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("Warning: listening on 0.0.0.0"), lines
        url = lines[1].split(" at ")[-1].strip()
        assert url.startswith("http://127.0.0.1:") and "?token=" in url
        assert httpx.get(url, timeout=60).status_code == 200
        assert httpx.get(url.split("?")[0], timeout=60).status_code == 403
    finally:
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=60)
    assert server.returncode == 0, out
    assert "Traceback" not in out


def test_latency_benchmark_runs_on_a_copy(fitted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.benchmark_scripts import load_benchmark

    before = listing(fitted)
    bench = load_benchmark("studio_latency")
    bench.main(["--project", str(fitted), "--repeats", "1", "--n", "2", "--steps", "2"])
    out = capsys.readouterr().out
    assert "first creature (1 image):" in out and "studio / mix:               x" in out
    assert listing(fitted) == before  # the project's own mixes/ is left alone


def test_an_unexpected_failure_while_loading_is_shown_and_the_worker_lives_on(
    fitted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creaturekit.generation import mix

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Cannot copy out of meta tensor")

    monkeypatch.setattr(mix.Mixer, "__init__", broken)
    with studio(fitted) as c:
        opened(c)
        deadline = time.monotonic() + 60
        while not (status := c.get("/api/status", headers=AUTH).json())["load_error"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "RuntimeError" in status["load_error"] and "a bug" in status["load_error"]
        response = c.post("/api/generate", json={**FAST, "parts": {"part0": [[0]]}}, headers=AUTH)
        job = finish(c, response.json(), timeout=60)  # served, not stuck behind a dead thread
        assert job["state"] == "failed" and "RuntimeError" in job["message"]
