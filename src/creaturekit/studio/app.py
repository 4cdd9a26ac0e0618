"""The studio's web app (Starlette): pages, pictures, project files and a small JSON API.

Security, as notebook servers do it: every request needs the session's secret token (in
the URL the command prints, then in a strict same-site cookie); a request that changes
anything needs it in the ``X-Studio-Token`` header, which another site's page cannot
send, so the cookie alone changes nothing. Project files are served only from inside
the project (no ``..``, no hidden files, no link leading out of it except an image the
manifest lists), only as pictures or as sandboxed pages that run no script.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from creaturekit.errors import CreatureKitError, UnsafePathError
from creaturekit.generation.history import (
    MixNotFoundError,
    delete_mix,
    list_mixes,
    mix_folder,
    read_mix,
)
from creaturekit.project import Project
from creaturekit.studio import pages
from creaturekit.studio.catalog import Catalog, PictureNotFoundError
from creaturekit.studio.compose import ComposeRequest, ComposeRequestError
from creaturekit.studio.worker import GenerationWorker, JobNotFoundError

log = logging.getLogger("creaturekit.studio")

TOKEN_HEADER = "X-Studio-Token"
TOKEN_COOKIE = "creaturekit_studio"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Project files the studio serves, by extension (pictures; pages run sandboxed).
SERVED = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".html", ".json"})
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
FILE_POLICY = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
MAX_WAIT_S = 5.0  # longest a job query waits for the job to finish
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_STATUS = {
    ComposeRequestError: 400,
    UnsafePathError: 404,
    MixNotFoundError: 404,
    PictureNotFoundError: 404,
    JobNotFoundError: 404,
}


class Studio:
    """The state one studio server holds: the project, its catalog, the worker, the token."""

    def __init__(self, project: Project, run: str | None = None, token: str | None = None) -> None:
        self.project = project
        self.token = token or secrets.token_urlsafe(24)
        self.catalog = Catalog(project)
        self.worker = GenerationWorker(project, run)
        self.run = run

    # -- pages -------------------------------------------------------------------------
    def page(self, request: Request, title: str, body: Any) -> HTMLResponse:
        return HTMLResponse(
            pages.shell(self.project, title, request.url.path, body, self.token),
            headers={"Content-Security-Policy": PAGE_POLICY},
        )

    def overview(self, request: Request) -> HTMLResponse:
        self.catalog.reload_config()  # names may have changed from the CLI
        result = self.catalog.result()
        runs = [r["name"] for r in self.runs() if r["state"] == "fitted"]
        mixes = len(list_mixes(self.project))
        return self.page(request, "Overview", pages.overview(self.project, result, runs, mixes))

    def parts(self, request: Request) -> HTMLResponse:
        self.catalog.reload_config()  # names may have changed from the CLI
        result = self.catalog.result()
        if result is None:
            return self.page(request, "Images", pages.images_page(self.project.manifest()))
        body = pages.parts_page(self.catalog.parts(result), self.catalog.samples(result))
        return self.page(request, "Parts", body)

    def compose(self, request: Request) -> HTMLResponse:
        self.catalog.reload_config()  # names may have changed from the CLI
        result = self.catalog.result()
        if result is None:
            body = pages.message(
                "Compose",
                "No parts to compose yet: run `creaturekit discover`, then `creaturekit fit`.",
            )
            return self.page(request, "Compose", body)
        fitted = [r["name"] for r in self.runs() if r["state"] == "fitted"]
        status = self.worker.status()
        run = status["run"] or self.run or (self._latest(fitted))
        why_not = None
        if not fitted:
            why_not = (
                "No fitted run yet, so nothing can be composed: run `creaturekit fit` "
                "(the parts are shown below)."
            )
        elif status["load_error"]:
            why_not = status["load_error"]
        parts = self.catalog.parts(result)
        body = pages.compose_page(self.project, parts, fitted, run, why_not, bool(fitted))
        return self.page(request, "Compose", body)

    def history(self, request: Request) -> HTMLResponse:
        self.catalog.reload_config()  # names may have changed from the CLI
        part = request.query_params.get("part") or None
        code_text = request.query_params.get("code") or ""
        code = int(code_text) if code_text.strip().isdigit() else None
        mixes = list_mixes(self.project, part, code)
        names = sorted({p for m in list_mixes(self.project) for p, _ in m.codes()})
        return self.page(request, "History", pages.history_page(mixes, names, part, code))

    def one_mix(self, request: Request) -> HTMLResponse:
        mix = read_mix(mix_folder(self.project, request.path_params["name"]))
        return self.page(request, mix.name, pages.mix_page(mix))

    def compare(self, request: Request) -> HTMLResponse:
        names = request.query_params.getlist("m")
        if not names:
            body = pages.message(
                "Compare", "Check two or more mixes on the History page to compare them."
            )
            return self.page(request, "Compare", body)
        mixes = [read_mix(mix_folder(self.project, n)) for n in names]
        return self.page(request, "Compare", pages.compare_page(mixes))

    def runs_view(self, request: Request) -> HTMLResponse:
        return self.page(request, "Runs", pages.runs_page(self.runs()))

    # -- data ------------------------------------------------------------------------
    def runs(self) -> list[dict[str, Any]]:
        """The project's runs with their state and ``eval/<run>/`` figures."""
        from creaturekit.evaluation.evaluate import REPORT_FILE, load_metrics
        from creaturekit.training.run import list_runs

        rows = []
        for run in list_runs(self.project):
            name = run.path.name
            try:
                saved = run.saved_config()
                base, steps = saved.get("base_model", "?"), saved["fit"].get("steps", "?")
            except CreatureKitError:
                base, steps = "(config.toml unreadable)", "?"
            metrics: dict[str, float | None] = {}
            eval_error = None
            if (self.project.eval_dir / name).is_dir():
                try:
                    metrics = load_metrics(self.project, name).overall
                except CreatureKitError as err:
                    eval_error = str(err)
            rows.append(
                {
                    "name": name,
                    "state": "fitted" if run.mapper.is_file() else "not finished",
                    "base_model": base,
                    "steps": steps,
                    "metrics": metrics,
                    "report": (self.project.eval_dir / name / REPORT_FILE).is_file(),
                    "pictures": sorted(
                        p.name for p in (self.project.eval_dir / name).glob("novel-best-*.png")
                    ),
                    "eval_error": eval_error,
                    "mtime": run.path.stat().st_mtime,
                }
            )
        return rows

    def _latest(self, fitted: list[str]) -> str | None:
        rows = [r for r in self.runs() if r["name"] in fitted]
        return max(rows, key=lambda r: r["mtime"])["name"] if rows else None

    # -- pictures and files --------------------------------------------------------
    def crop(self, request: Request) -> Response:
        part, row = _ints(request, "part", "row")
        return _png(self.catalog.crop_png(part, row))

    def overlay(self, request: Request) -> Response:
        (row,) = _ints(request, "row")
        return _png(self.catalog.overlay_png(row))

    def thumb(self, request: Request) -> Response:
        (image_id,) = _ints(request, "id")
        return _png(self.catalog.thumb_png(image_id))

    def file(self, request: Request) -> Response:
        path = self.project_file(request.path_params["path"])
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind, headers={"Content-Security-Policy": FILE_POLICY})

    def project_file(self, relative: str) -> Path:
        """The project file ``relative`` may name, or refused (see the module docstring)."""
        from creaturekit.paths import inside

        missing = PictureNotFoundError(f"No file {relative!r} is served from this project.")
        parts = relative.replace("\\", "/").split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise missing
        path = inside(self.project.root, relative, "the request")
        if path.suffix.lower() not in SERVED or not path.is_file():
            raise missing
        root = self.project.root.resolve()
        if not path.resolve().is_relative_to(root):
            listed = {f"images/{r.file}" for r in self.project.manifest()}
            if "/".join(parts) not in listed:  # an image imported with --link is followed
                raise missing
        return path

    # -- API -------------------------------------------------------------------------
    async def rename(self, request: Request) -> JSONResponse:
        from creaturekit.discovery.naming import name_part

        (index,) = _ints(request, "index")
        body = await _json(request)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise ComposeRequestError('Send {"name": "NEW_NAME"}.')
        await run_in_threadpool(name_part, self.project, index, name.strip())
        log.info("Part %d renamed to %r", index, name.strip())
        return JSONResponse({"index": index, "name": name.strip()})

    async def generate(self, request: Request) -> JSONResponse:
        compose = ComposeRequest.from_json(await _json(request))
        job = self.worker.submit(compose)
        return JSONResponse(job.to_dict(), status_code=202)

    def job(self, request: Request) -> JSONResponse:
        """The job; with ``?wait=S`` (at most 5 s) the answer waits until the job finishes
        or S seconds pass, so a page learns of its images at once without polling fast."""
        job = self.worker.job(request.path_params["id"])
        try:
            wait = min(max(float(request.query_params.get("wait", 0)), 0.0), MAX_WAIT_S)
        except ValueError:
            raise ComposeRequestError("wait must be a number of seconds.") from None
        if wait:
            job.finished.wait(wait)
        return JSONResponse(job.to_dict())

    def cancel(self, request: Request) -> JSONResponse:
        return JSONResponse(self.worker.cancel(request.path_params["id"]).to_dict())

    def delete(self, request: Request) -> JSONResponse:
        delete_mix(self.project, request.path_params["name"])
        log.info("Deleted mixes/%s", request.path_params["name"])
        return JSONResponse({"deleted": request.path_params["name"]})

    def status(self, request: Request) -> JSONResponse:
        holder = self.project.lock_holder()
        return JSONResponse({**self.worker.status(), "lock": holder})


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ComposeRequestError("The request body is not valid JSON.") from None


def _ints(request: Request, *names: str) -> list[int]:
    try:
        return [int(request.path_params[n]) for n in names]
    except ValueError:
        raise PictureNotFoundError(f"{request.url.path} names no picture.") from None


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


def create_app(
    project: Project,
    *,
    run: str | None = None,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
    preload: bool = True,
) -> Starlette:
    """The studio app for ``project``; ``app.state.studio`` holds its :class:`Studio`.

    ``allowed_hosts`` limits the Host header (DNS rebinding; None: any). ``preload``
    loads the run when the app starts, so the first click does not wait for it.
    """
    studio = Studio(project, run, token)

    def handle(
        func: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint with library errors turned into a clear message."""

        async def endpoint(request: Request) -> Response:
            try:
                return await func(request)
            except CreatureKitError as err:
                return _error(request, studio, err)

        return endpoint

    def sync(func: Callable[[Request], Response]) -> Callable[[Request], Awaitable[Response]]:
        """A blocking endpoint, run off the event loop (pages and pictures read files)."""

        async def threaded(request: Request) -> Response:
            return await run_in_threadpool(func, request)

        return threaded

    routes = [
        Route("/", handle(sync(studio.overview))),
        Route("/parts", handle(sync(studio.parts))),
        Route("/compose", handle(sync(studio.compose))),
        Route("/history", handle(sync(studio.history))),
        Route("/history/{name}", handle(sync(studio.one_mix))),
        Route("/compare", handle(sync(studio.compare))),
        Route("/runs", handle(sync(studio.runs_view))),
        Route("/crop/{part}/{row}.png", handle(sync(studio.crop))),
        Route("/overlay/{row}.png", handle(sync(studio.overlay))),
        Route("/thumb/{id}.png", handle(sync(studio.thumb))),
        Route("/files/{path:path}", handle(sync(studio.file))),
        Route("/static/{name}", _static),
        Route("/api/status", handle(sync(studio.status))),
        Route("/api/parts/{index}/name", handle(studio.rename), methods=["POST"]),
        Route("/api/generate", handle(studio.generate), methods=["POST"]),
        Route("/api/jobs/{id}", handle(sync(studio.job))),
        Route("/api/jobs/{id}/cancel", handle(sync(studio.cancel)), methods=["POST"]),
        Route("/api/mixes/{name}", handle(sync(studio.delete)), methods=["DELETE"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        studio.worker.start(preload=preload)
        try:
            yield
        finally:
            studio.worker.stop()

    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["*"]),
        Middleware(TokenGuard, token=studio.token),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.studio = studio
    return app


class TokenGuard(BaseHTTPMiddleware):
    """Refuse requests without the token (see the module docstring); harden every answer."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.headers.get(TOKEN_HEADER)
        if request.method not in SAFE_METHODS:
            if not _same(given, self.token):
                return _refused(f"Changes need the studio's token in the {TOKEN_HEADER} header.")
        elif not any(
            _same(t, self.token)
            for t in (given, request.query_params.get("token"), request.cookies.get(TOKEN_COOKIE))
        ):
            return _refused(
                "This studio needs its token: open the URL `creaturekit studio` printed."
            )
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if _same(request.query_params.get("token"), self.token):
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
        return response


def _same(given: str | None, token: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), token.encode())


def _refused(text: str) -> Response:
    return Response(text + "\n", status_code=403, media_type="text/plain")


def _error(request: Request, studio: Studio, err: CreatureKitError) -> Response:
    """A library error as JSON (API) or a page: one clear sentence, logged."""
    status = next((code for cls, code in _STATUS.items() if isinstance(err, cls)), 409)
    log.warning("%s %s: %s", request.method, request.url.path, err)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": str(err)}, status_code=status)
    if status == 404 and not request.url.path.startswith(("/history", "/compare")):
        return Response(str(err) + "\n", status_code=404, media_type="text/plain")
    response = studio.page(request, "Error", pages.message("Sorry", str(err)))
    response.status_code = status
    return response


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ("studio.js", "studio.css"):
        return Response("Not found\n", status_code=404, media_type="text/plain")
    data = resources.files("creaturekit.studio").joinpath("static", name).read_bytes()
    kind = "text/javascript" if name.endswith(".js") else "text/css"
    return Response(data, media_type=f"{kind}; charset=utf-8")


def url_with_token(host: str, port: int, token: str) -> str:
    """The URL to open: loopback names as typed, IPv6 in brackets, the token in the query."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    return f"http://{shown}:{port}/?token={token}"
