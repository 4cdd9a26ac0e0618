"""``creaturekit studio``: a local web app to see every part and compose creatures by eye.

Needs the optional ``studio`` extra (``pip install 'creaturekit[studio]'``)::

    from creaturekit import open_project
    from creaturekit.studio import create_app, serve

    serve(open_project("birds/"))            # what `creaturekit studio -C birds` runs
    app = create_app(open_project("birds/"))  # an ASGI app, e.g. for a test client

Modules: :mod:`.app` (routes, token, file serving), :mod:`.pages` (HTML),
:mod:`.catalog` (parts and pictures), :mod:`.compose` (the form's request and its
``mix`` command), :mod:`.worker` (the generation thread), :mod:`.server` (uvicorn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from creaturekit.errors import CreatureKitError

if TYPE_CHECKING:
    from creaturekit.studio.app import create_app
    from creaturekit.studio.server import serve

__all__ = ["StudioMissingError", "create_app", "require_studio", "serve"]

INSTALL_HINT = "pip install 'creaturekit[studio]'"


class StudioMissingError(CreatureKitError):
    """The optional web packages of the studio are not installed."""


def require_studio() -> None:
    """Refuse, in one sentence, when the ``studio`` extra is not installed."""
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise StudioMissingError(
            f"The studio needs the optional web packages ({', '.join(missing)} missing): "
            f"run `{INSTALL_HINT}`."
        )


def __getattr__(name: str) -> Any:
    """``create_app`` and ``serve`` import the web packages only when asked for."""
    if name == "create_app":
        require_studio()
        from creaturekit.studio.app import create_app

        return create_app
    if name == "serve":
        require_studio()
        from creaturekit.studio.server import serve

        return serve
    raise AttributeError(name)
