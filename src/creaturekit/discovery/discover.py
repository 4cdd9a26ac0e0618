"""Stage 1 on a project: pick the backend, fit on ALL the project's images, store the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from creaturekit import constants as C
from creaturekit import fsutil
from creaturekit.config import DiscoverSettings
from creaturekit.discovery.base import CONFIG_FILE, Discoverer
from creaturekit.discovery.checkpoint import CHECKPOINT_FILE
from creaturekit.discovery.errors import DiscoveryDataError, DiscoveryResultError
from creaturekit.discovery.registry import load_backend
from creaturekit.discovery.result import (
    FEATURES_DIR,
    DiscoveryResult,
    build_result,
    clean_staging,
    read_result,
    staging_folder,
    write_result,
)
from creaturekit.discovery.scale import Scale
from creaturekit.errors import ConfigError
from creaturekit.models import project_model, trust_model_path
from creaturekit.project import Project

#: Settings of ``[discover]`` in creaturekit.toml that are discoverer options.
_SETTINGS = ("model", "parts", "subconcepts", "bg_subconcepts", "image_size", "batch_size", "seed")


def make_discoverer(project: Project, backend: str | None = None, **options: Any) -> Discoverer:
    """The backend's discoverer with options from flags (and ``--option``), then
    ``[discover.options]``, then ``[discover]``, then the backend's defaults.

    The configured ``model`` applies only to the configured backend, and only when it
    was changed from the stock default: otherwise each backend uses its own default.
    """
    settings = project.config.discover
    name = backend or settings.backend
    cls = load_backend(name)
    if not (isinstance(cls, type) and issubclass(cls, Discoverer)):
        raise DiscoveryDataError(f"The backend {name!r} is not a creaturekit Discoverer.")
    known = set(cls.param_names())
    listed = f"see `creaturekit plugins --options {name}`"
    unknown = sorted(k for k, v in options.items() if v is not None and k not in known)
    if unknown:
        raise ConfigError(f"The backend {name!r} has no option {', '.join(unknown)} ({listed}).")
    table = dict(settings.options) if name == settings.backend else {}
    for key in table:
        where = f"discover.options.{key} in {C.CONFIG_NAME}"
        if key in _SETTINGS:
            raise ConfigError(f"{where}: set {key} in [discover] itself.")
        if key not in known:
            raise ConfigError(f"{where} is not an option of the backend {name!r} ({listed}).")
    defaults = cls.option_defaults()
    for key, value in [*table.items(), *options.items()]:
        _check_option(key, value, defaults.get(key))
    merged = {k: getattr(settings, k) for k in _SETTINGS if k in known}
    if name != settings.backend or settings.model == DiscoverSettings().model:
        merged.pop("model", None)  # an unchanged default is the backend's own choice
    elif merged.get("model"):
        where = f"discover.model in {C.CONFIG_NAME}"
        merged["model"] = project_model(str(merged["model"]), project.root, where)
    if options.get("model"):  # the user's own choice: relative to the project if there
        given = str(options["model"])
        inner = project.root / given
        options["model"] = str(inner) if not Path(given).is_absolute() and inner.exists() else given
        trust_model_path(options["model"])
    merged.update(table)
    merged.update({k: v for k, v in options.items() if v is not None})
    return cls(**merged)


def _check_option(key: str, value: Any, default: Any) -> None:
    """A backend option must have its default's type (a whole number is a number too)."""
    if value is None or default is None:
        return
    numbers = (int, float)
    kind = type(default)
    fits = (isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))) or (
        kind is float and isinstance(value, numbers) and not isinstance(value, bool)
    )
    if not fits:
        raise ConfigError(
            f"The discovery option {key} takes a {kind.__name__} (like its default "
            f"{default!r}), got {value!r}."
        )


def project_scale(project: Project) -> Scale:
    """The memory bounds and k-means engine set in ``[discover]``."""
    settings = project.config.discover
    return Scale(
        sample_images=settings.sample_images,
        subconcept_points=settings.subconcept_points,
        kmeans=settings.kmeans,
    ).check()


def discover(
    project: Project,
    backend: str | None = None,
    *,
    report: bool = True,
    resume: bool = False,
    **options: Any,
) -> DiscoveryResult:
    """Fit ``backend`` on the project's images and store the result (and report) atomically,
    under the project lock.

    Features already in the project's cache are never extracted again; with ``resume``,
    the centroids an interrupted run learnt from the same images and settings are
    reused too (they are kept until the result is written).
    """
    with project.lock("discover"):
        return _discover(project, backend, report=report, resume=resume, **options)


def _discover(
    project: Project, backend: str | None, *, report: bool, resume: bool, **options: Any
) -> DiscoveryResult:
    records = _records(project)
    discoverer = make_discoverer(project, backend, **options)
    folder = project.discovery_dir
    folder.mkdir(parents=True, exist_ok=True)
    clean_staging(folder)
    paths = [project.image_path(r) for r in records]
    checkpoint = folder / CHECKPOINT_FILE
    discoverer.fit(
        paths,
        cache_dir=folder / FEATURES_DIR,
        scale=project_scale(project),
        checkpoint=checkpoint,
        resume=resume,
    )
    result = build_result(discoverer, records, project.images_hash())
    extra: tuple[str, ...] = ()
    if report:
        from creaturekit.discovery.report import write_report

        extra = write_report(staging_folder(folder, result.stamp), project, result)
    write_result(folder, result, discoverer, extra_dirs=extra)
    checkpoint.unlink(missing_ok=True)
    return result


def extract_share(
    project: Project,
    backend: str | None = None,
    *,
    rank: int = 0,
    processes: int = 1,
    **options: Any,
) -> int:
    """Extract and cache the features of this process's share of the project's images
    (every ``processes``-th image not cached yet, from ``rank``); returns how many.

    Processes with different ranks write different cache files, so N processes (one per
    GPU, or machines sharing the project folder) extract the features once, in parallel;
    :func:`discover` then reads them from the cache.
    """
    discoverer = make_discoverer(project, backend, **options)
    paths = [project.image_path(r) for r in _records(project)]
    return discoverer.cache_features(
        paths, project.discovery_dir / FEATURES_DIR, rank=rank, processes=processes
    )


def _records(project: Project) -> list[Any]:
    records = project.images()
    if not records:
        raise DiscoveryDataError(
            f"The project has no {project.config.images.split!r} images to discover parts in; "
            "import some with `creaturekit init DIR --images SRC --force`."
        )
    return records


def load_result(project: Project) -> DiscoveryResult:
    """The project's stored discovery result."""
    return read_result(project.discovery_dir)


def load_discoverer(folder: str | Path) -> Discoverer:
    """The fitted discoverer saved in ``folder`` (e.g. a project's ``discovery/``)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise DiscoveryResultError(
            f"No fitted discoverer in {folder}; run `creaturekit discover` first."
        )
    config = fsutil.read_json(path)
    backend = config.get("backend") if isinstance(config, dict) else None
    if not isinstance(backend, str):
        raise fsutil.damaged(path, "no backend name")
    discoverer = load_backend(backend).load(folder)
    root = Path(folder).resolve().parent  # the project holding discovery/
    for name in ("model", "pretrained"):  # weights the backend will read
        if value := getattr(discoverer, name, ""):
            where = f"{name} in {path}"
            setattr(discoverer, name, project_model(value, root, where, f"discover --{name}"))
    return discoverer
