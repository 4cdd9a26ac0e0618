"""The registry of discovery backends: one entry-point group for built-in and installed ones.

Built-in backends are registered through the same entry-point group as plugins (see
``pyproject.toml``), so they are not special. Listing reads only package metadata;
a backend's module is imported when it is used or checked, and a plugin that fails to
import is reported, never crashing the CLI. ``CREATUREKIT_PLUGINS=a,b`` limits which
backends are visible (useful in tests and to rule out a misbehaving plugin).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from creaturekit.errors import CreatureKitError

GROUP = "creaturekit.discoverers"
BUILTIN_DISTRIBUTION = "creaturekit"
PROJECT_PLUGINS: dict[str, str] = {
    "effnet-kmeans": "creaturekit-effnet",
    "clip-kmeans": "creaturekit-clip",
    "dino-hdbscan": "creaturekit-hdbscan",
}
"""Backends of this project's own plugin distributions (in ``plugins/``), by name."""


class UnknownBackendError(CreatureKitError):
    """No backend of that name is installed."""


class BackendLoadError(CreatureKitError):
    """A backend is installed but its code failed to import."""


@dataclass(frozen=True)
class BackendInfo:
    """What package metadata says about a backend (nothing is imported)."""

    name: str
    target: str  # "module:Class"
    distribution: str
    version: str

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


def _entry_points() -> list[EntryPoint]:
    selected = list(entry_points(group=GROUP))
    allowed = os.environ.get("CREATUREKIT_PLUGINS")
    if allowed is not None:
        names = {n.strip() for n in allowed.split(",") if n.strip()}
        selected = [ep for ep in selected if ep.name in names]
    return sorted(selected, key=lambda ep: ep.name)


def _info(ep: EntryPoint) -> BackendInfo:
    dist = ep.dist
    return BackendInfo(
        name=ep.name,
        target=ep.value,
        distribution=dist.metadata["Name"] if dist is not None else "?",
        version=dist.version if dist is not None else "?",
    )


def list_backends() -> list[BackendInfo]:
    """Every installed backend, sorted by name."""
    return [_info(ep) for ep in _entry_points()]


def load_backend(name: str) -> Any:
    """The backend class registered as ``name``."""
    matches = [ep for ep in _entry_points() if ep.name == name]
    if not matches:
        known = ", ".join(b.name for b in list_backends()) or "none"
        if name in PROJECT_PLUGINS:
            package = PROJECT_PLUGINS[name]
            raise UnknownBackendError(
                f"The discovery backend {name!r} comes with the plugin {package}, which is "
                f"not installed: `pip install {package}` (from a source checkout: "
                f"`pip install plugins/{package}`), or choose an installed backend "
                f"({known}) with --backend."
            )
        raise UnknownBackendError(
            f"Unknown discovery backend {name!r}. Installed backends: {known} "
            "(see `creaturekit plugins`)."
        )
    ep = matches[0]
    try:
        return ep.load()
    except Exception as err:  # a plugin's own bug must not crash the CLI
        info = _info(ep)
        raise BackendLoadError(
            f"The discovery backend {name!r} from {info.distribution} {info.version} failed "
            f"to load ({type(err).__name__}: {err}). Reinstall or update that package."
        ) from err


def check_backends() -> list[tuple[BackendInfo, str | None]]:
    """Each backend with the error its import raises (None when it loads)."""
    out: list[tuple[BackendInfo, str | None]] = []
    for info in list_backends():
        try:
            load_backend(info.name)
            out.append((info, None))
        except BackendLoadError as err:
            out.append((info, str(err.__cause__ or err)))
    return out
