"""The studio's first-creature latency and its overhead over `mix`, side by side.

    python benchmarks/studio_latency.py --project demo [--run demo] [--n 4] [--repeats 5]
    python benchmarks/studio_latency.py                # a tiny random model, no download

Works on a copy of the project (in a temp folder), so its ``mixes/`` is left alone.
Serves the studio with uvicorn on loopback, as ``creaturekit studio`` does, and times,
after the run is loaded (the studio loads it at start-up):

* **first creature**: from the POST a click sends to the answer of the job query the
  page then waits on (``?wait=0.5``, as ``studio.js``) that says it is written: one image;
* **studio vs mix**: ``n`` images through the studio against
  ``generation.mix.mix(..., mixer=loaded)`` writing the same images, interleaved, in
  one process; the ratio is the studio's overhead (HTTP, queue, job queries).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: How long the page's job query waits for the job to finish (studio.js), in seconds.
WAIT_S = 0.5


def tiny_project(folder: Path) -> Path:
    """A toy project with a tiny random run (as the tests build it)."""
    from tests.helpers import fit_runs
    from tests.tiny_sd import discovered_toy_project, save_tiny_pipeline

    model = save_tiny_pipeline(folder / "sd")
    discovered_toy_project(folder / "discovered")
    return Path(fit_runs(folder / "discovered", folder / "toy", model, {"r1": {}}))


def serve(project: Any, run: str | None) -> tuple[str, str, Any, Any]:
    """The studio on a free loopback port: (base URL, token, server, app)."""
    import uvicorn

    from creaturekit.studio.app import create_app
    from creaturekit.studio.server import bind

    sock = bind("127.0.0.1", 0)
    app = create_app(project, run=run)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    worker = app.state.studio.worker
    while worker.mixer is None and worker.load_error is None:
        time.sleep(0.05)  # the run loads at start-up
    if worker.load_error:
        raise SystemExit(worker.load_error)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", app.state.studio.token, server, app


def click(client: Any, body: dict[str, Any]) -> float:
    """Seconds from the POST to the answer that says the job is done (as the page asks)."""
    started = time.perf_counter()
    job = client.post("/api/generate", json=body).json()
    while job["state"] not in ("done", "failed", "cancelled"):
        job = client.get(f"/api/jobs/{job['id']}", params={"wait": WAIT_S}).json()
    if job["state"] != "done":
        raise SystemExit(f"The studio's job {job['state']}: {job['message']}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", type=Path, help="A fitted project (default: a tiny one).")
    parser.add_argument("--run", default=None)
    parser.add_argument("--n", type=int, default=4, help="Images per request (studio vs mix).")
    parser.add_argument("--steps", type=int, default=None, help="Default: the project's.")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import httpx
    import torch

    from creaturekit.discovery.discover import load_result
    from creaturekit.discovery.naming import part_names
    from creaturekit.generation.mix import mix
    from creaturekit.progress import quiet
    from creaturekit.project import open_project

    with tempfile.TemporaryDirectory() as tmp, quiet():
        if args.project is None:
            root = tiny_project(Path(tmp))
            steps = args.steps or 2
        else:
            root = Path(tmp) / "project"
            shutil.copytree(args.project, root, ignore=shutil.ignore_patterns("mixes", "eval"))
            steps = args.steps
        project = open_project(root)
        result = load_result(project)
        names = part_names(project, result)
        first = result.codes[0]["codes"]
        parts = {names[int(m)]: [[int(k)]] for m, k in first.items()}
        started = time.perf_counter()
        base, token, server, app = serve(project, args.run)
        load_s = time.perf_counter() - started
        mixer = app.state.studio.worker.mixer  # the same loaded run for both sides
        body = {"parts": parts, "steps": steps}
        times: dict[str, list[float]] = {"first": [], "studio": [], "mix": []}
        with httpx.Client(base_url=base, headers={"X-Studio-Token": token}, timeout=600) as c:
            for i in range(args.repeats + 1):  # the first round warms up
                one = click(c, {**body, "seed": i})
                if i % 2:  # alternate which side goes first (the machine's load drifts)
                    many = click(c, {**body, "seed": i, "n": args.n})
                t0 = time.perf_counter()
                mix(project, parts, mixer=mixer, seed=i, n=args.n, steps=steps)
                direct = time.perf_counter() - t0
                if not i % 2:
                    many = click(c, {**body, "seed": i, "n": args.n})
                if i:
                    times["first"].append(one)
                    times["studio"].append(many)
                    times["mix"].append(direct)
        server.should_exit = True
    median = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); project "
        f"{args.project or 'tiny (random model)'}, run {mixer.run.path.name}, "
        f"{steps or project.config.mix.steps} steps, median of {args.repeats}"
    )
    print(f"run loaded at start-up:     {load_s:.2f} s")
    print(f"first creature (1 image):   {median['first']:.3f} s from click to shown")
    print(f"mix, {args.n} images:            {median['mix']:.3f} s")
    print(f"studio, {args.n} images:         {median['studio']:.3f} s")
    print(f"studio / mix:               x{median['studio'] / median['mix']:.3f}")


if __name__ == "__main__":
    main()
