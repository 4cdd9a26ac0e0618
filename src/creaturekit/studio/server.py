"""Serving the studio: bind a socket (loopback unless asked), run uvicorn, open the browser."""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
import webbrowser
from collections.abc import Callable

from creaturekit.errors import CreatureKitError
from creaturekit.project import Project
from creaturekit.studio.app import LOOPBACK_HOSTS, create_app, url_with_token

#: Ports tried in turn when none is given (then any free one).
DEFAULT_PORTS = range(8765, 8775)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket on ``host``: ``port``, or the first free default port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in [port] if port is not None else [*DEFAULT_PORTS, 0]:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), candidate))
        except OSError as err:
            sock.close()
            if port is None and err.errno == errno.EADDRINUSE:
                continue
            if err.errno == errno.EADDRINUSE:
                raise CreatureKitError(
                    f"Port {port} is in use; choose another with --port, or leave it out."
                ) from None
            raise CreatureKitError(
                f"Cannot listen on {host}:{candidate} ({err.strerror})."
            ) from None
        sock.listen(64)
        return sock
    raise CreatureKitError("No free port found; give one with --port.")  # pragma: no cover


def serve(
    project: Project,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    open_browser: bool = True,
    run: str | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the studio for ``project`` until interrupted (Ctrl-C stops the worker too)."""
    import uvicorn

    if not is_loopback(host):
        say(
            f"Warning: listening on {host}, so other machines can reach the studio; anyone "
            "with the URL below can read this project and write mixes in it."
        )
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    allowed = [*LOOPBACK_HOSTS, host.strip("[]")] if is_loopback(host) else None
    app = create_app(project, run=run, allowed_hosts=allowed)
    token_url = url_with_token(host, bound, app.state.studio.token)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    say(f"creaturekit studio for {project.root} at {token_url}")
    say("Press Ctrl-C to stop.")
    if open_browser:
        threading.Thread(target=_open_when_up, args=(server, token_url), daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down cleanly, then re-raised the signal
        pass
    finally:
        sock.close()
    say("The studio has stopped.")


def _open_when_up(server: object, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not getattr(server, "started", False) and time.monotonic() < deadline:
        time.sleep(0.1)
    webbrowser.open(url)
