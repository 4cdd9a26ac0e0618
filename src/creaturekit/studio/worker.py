"""The studio's one generation worker: a thread that holds a loaded run and works a queue.

Loading a run (base model, part tokens, mapper, LoRA) is the slow part of ``mix``; the
worker does it once, then every request goes through the library's own
:func:`~creaturekit.generation.mix.mix` with that :class:`Mixer`, so images land in
``mixes/<stamp>/`` exactly as the CLI writes them. Requests from several browser tabs
queue and run one at a time. A job reports its progress per denoising step and stops at
the next step when cancelled (or when the server stops); since ``mix`` writes only at
the end, through a staging folder, a stopped job leaves nothing behind.
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from creaturekit.config import load_config
from creaturekit.discovery.result import RESULT_FILE
from creaturekit.errors import CreatureKitError, ProjectLockedError, StageMissingError
from creaturekit.generation.requests import PartRequestError
from creaturekit.lock import describe_holder
from creaturekit.project import Project
from creaturekit.studio.compose import ComposeRequest

if TYPE_CHECKING:
    from creaturekit.generation.mix import Mixer

log = logging.getLogger("creaturekit.studio")

QUEUED, LOADING, RUNNING, DONE, FAILED, CANCELLED = (
    "queued", "loading", "running", "done", "failed", "cancelled",
)  # fmt: skip
FINISHED = (DONE, FAILED, CANCELLED)


class JobNotFoundError(CreatureKitError):
    """A job id this studio session never gave out."""


class Cancelled(Exception):
    """Raised inside the denoising loop to stop a cancelled job."""


@dataclass
class Job:
    """One queued request and what became of it."""

    id: str
    request: ComposeRequest
    state: str = QUEUED
    steps_done: int = 0
    steps_total: int = 0
    message: str = ""
    folder: str | None = None  # the mix folder's name under mixes/
    images: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    command: str = ""
    seconds: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The job as ``GET /api/jobs/<id>`` returns it."""
        progress = self.steps_done / self.steps_total if self.steps_total else 0.0
        return {
            "id": self.id,
            "state": self.state,
            "progress": round(min(progress, 1.0), 3),
            "message": self.message,
            "folder": self.folder,
            "images": self.images,
            "records": self.records,
            "command": self.command,
            "seconds": round(self.seconds, 3),
        }


class GenerationWorker:
    """Generates for one project in a background thread, one job at a time."""

    def __init__(self, project: Project, run: str | None = None, scheduler: str = "ddim") -> None:
        self.project = project
        self.run = run  # the run to load first (default: the latest)
        self.scheduler = scheduler
        self.mixer: Mixer | None = None  # the loaded run
        self.load_error: str | None = None
        self.jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._current: Job | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- control -----------------------------------------------------------------------
    def start(self, preload: bool = True) -> None:
        """Start the thread; with ``preload``, load the run before the first request."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, args=(preload,), name="creaturekit-studio", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel the running and queued jobs and end the thread (at the next step)."""
        self._stopping.set()
        with self._lock:
            for job in self.jobs.values():
                job.cancel.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, request: ComposeRequest) -> Job:
        """Queue ``request``; the job's state tells when its images are written."""
        if self._stopping.is_set():
            raise CreatureKitError("The studio is stopping; no new images are made.")
        job = Job(id=str(next(self._ids)), request=request)
        with self._lock:
            self.jobs[job.id] = job
        self._queue.put(job)
        self.start()
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (a finished one is left as it is)."""
        job = self.job(job_id)
        if job.state not in FINISHED:
            job.cancel.set()
            if job.state == QUEUED:
                job.state, job.message = CANCELLED, "Cancelled before it started."
                job.finished.set()
        return job

    def job(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"There is no job {job_id!r} in this studio session.")
        return job

    def status(self) -> dict[str, Any]:
        """The loaded run, a load error, and the queue."""
        with self._lock:
            waiting = sum(1 for j in self.jobs.values() if j.state == QUEUED)
        current = self._current
        return {
            "run": None if self.mixer is None else self.mixer.run.path.name,
            "load_error": self.load_error,
            "current": None if current is None else current.id,
            "queued": waiting,
        }

    # -- the thread --------------------------------------------------------------------
    def _work(self, preload: bool) -> None:
        if preload:
            try:
                self._mixer_for(self.run)
            except CreatureKitError as err:
                self.load_error = str(err)  # shown on the compose page
            except Exception as err:  # a bug: said on the page, and the worker lives on
                self.load_error = (
                    f"Unexpected {type(err).__name__} while loading the run: {err}. "
                    "This is a bug in creaturekit."
                )
                log.exception("Loading the run failed")
        while not self._stopping.is_set():
            job = self._queue.get()
            if job is None:
                break
            if job.state != QUEUED:
                continue  # cancelled while it waited
            self._current = job
            try:
                self._run(job)
            finally:
                self._current = None

    def _run(self, job: Job) -> None:
        started = time.perf_counter()
        try:
            self._generate(job)
        except Cancelled:
            job.state, job.message = CANCELLED, "Cancelled; nothing was written."
        except CreatureKitError as err:
            job.state, job.message = FAILED, str(err)
            log.warning("Job %s failed: %s", job.id, err)
        except Exception as err:  # a bug: the page and the log say what failed
            job.state = FAILED
            job.message = f"Unexpected {type(err).__name__}: {err}. This is a bug in creaturekit."
            log.exception("Job %s failed", job.id)
        job.seconds = time.perf_counter() - started
        job.finished.set()

    def _mixer_for(self, run: str | None) -> Mixer:
        """The loaded mixer of ``run`` (default: the loaded one, else the latest run)."""
        from creaturekit.generation.mix import Mixer
        from creaturekit.training.run import list_runs, run_folder

        if self.mixer is not None and run in (None, self.mixer.run.path.name):
            return self.mixer
        if run is not None and not run_folder(self.project, run).path.is_dir():
            names = ", ".join(r.path.name for r in list_runs(self.project)) or "none"
            raise StageMissingError(f"There is no run {run!r} in this project (runs: {names}).")
        self.mixer = None
        self.mixer = Mixer(self.project, run, self.scheduler)
        self.load_error = None
        log.info("Loaded run %s", self.mixer.run.path.name)
        return self.mixer

    def _generate(self, job: Job) -> None:
        from creaturekit.generation.mix import mix, sweep

        request = job.request
        holder = self.project.lock_holder()
        if holder is not None:
            raise ProjectLockedError(
                f"This project is being changed by {describe_holder(holder)}; "
                "generate again when it has finished."
            )
        if not (self.project.discovery_dir / RESULT_FILE).is_file():
            raise StageMissingError(
                "This project has no parts yet: run `creaturekit discover`, then `creaturekit fit`."
            )
        job.state = LOADING
        self.project.config = load_config(self.project.config_path)  # names renamed by the CLI
        mixer = self._mixer_for(request.run)
        mixer.use_names(self.project.config)
        parts = {**request.parts, **self._draw(mixer, request)}
        steps = request.steps or self.project.config.mix.steps
        combos = len(sweep(parts)) if parts else 1
        job.steps_total = combos * request.n * steps
        job.state = RUNNING

        def step() -> None:
            if job.cancel.is_set():
                raise Cancelled
            job.steps_done += 1

        result = mix(
            self.project,
            parts,
            request.prompt,
            mixer=mixer,
            like=request.like,
            n=request.n,
            seed=request.seed,
            steps=request.steps,
            guidance=request.guidance,
            negative=request.negative,
            on_step=step,
        )
        assert result.folder is not None
        job.folder = result.folder.name
        job.images = [f"mix-{i:03d}.png" for i in range(len(result.images))]
        job.records = [{**r, "blank": i in result.blank} for i, r in enumerate(result.records)]
        job.command = request.command(self.project.root, parts, mixer.run.path.name)
        job.state, job.steps_done = DONE, job.steps_total
        log.info("Job %s: %d image(s) -> mixes/%s", job.id, len(result.images), job.folder)

    @staticmethod
    def _draw(mixer: Mixer, request: ComposeRequest) -> dict[str, list[list[int]]]:
        """A random code for each part of ``request.random`` (one draw per click)."""
        rng = random.SystemRandom()
        drawn = {}
        for name in request.random:
            if name not in mixer.vocabulary.by_name:
                raise PartRequestError(
                    f"Unknown part {name!r}; this run's parts: {mixer.vocabulary.describe()}."
                )
            k = mixer.vocabulary.parts[mixer.vocabulary.by_name[name]].subconcepts
            drawn[name] = [[rng.randrange(k)]]
        return drawn
