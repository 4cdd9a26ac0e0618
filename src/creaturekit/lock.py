"""A per-project lock so that two mutating commands never change one project at once.

The lock is a small JSON file created with ``O_EXCL``. It names its holder (command,
pid, host, start time) so the message to a second command can say who holds it. A lock
whose process is gone (same host, dead pid) is stale and is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from creaturekit.errors import ProjectLockedError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(path: Path) -> dict[str, Any] | None:
    """The lock's record, or None when it is unreadable or not a record we wrote."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return None
    return holder


def _is_stale(holder: dict[str, Any] | None) -> bool:
    if holder is None:
        return True  # unreadable, malformed or half-written lock: its writer died mid-write
    if holder.get("host") != socket.gethostname():
        return False  # cannot check a process on another machine
    return not _pid_alive(holder["pid"])


def describe_holder(holder: dict[str, Any]) -> str:
    """Human description of a lock holder, e.g. ``creaturekit fit (pid 12, since 10:40)``."""
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.get("started", 0)))
    return (
        f"`creaturekit {holder.get('command', '?')}` "
        f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since})"
    )


def lock_holder(path: Path) -> dict[str, Any] | None:
    """Who holds the lock file ``path`` now (its record), or None when it is free or stale."""
    if not path.exists():
        return None
    holder = _read_holder(path)
    return None if _is_stale(holder) else holder


_held: dict[tuple[int, str], int] = {}  # (pid, lock file) -> blocks of this process in it
_held_guard = threading.Lock()


@contextlib.contextmanager
def project_lock(path: Path, command: str) -> Iterator[None]:
    """Hold the lock file ``path`` for the duration of the block.

    Re-entrant within a process, threads included (the studio renames a part while its
    worker writes a mix): the file is removed when the last block holding it ends.
    """
    key = (os.getpid(), os.path.abspath(path))  # a forked child holds nothing
    with _held_guard:
        if not _held.get(key):
            _acquire(path, command)
        _held[key] = _held.get(key, 0) + 1
    try:
        yield
    finally:
        with _held_guard:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
                path.unlink(missing_ok=True)


def _acquire(path: Path, command: str) -> None:
    """Create the lock file ``path`` naming this process, or say who holds it."""
    record = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
    }
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except PermissionError:
            raise ProjectLockedError(
                f"Cannot write in {path.parent} (permission denied): creaturekit changes "
                "only projects it may write to. Fix the folder's permissions, or copy the "
                "project somewhere writable."
            ) from None
        except FileExistsError:
            holder = _read_holder(path)
            ours = (
                holder is not None
                and holder.get("pid") == os.getpid()
                and holder.get("host") == socket.gethostname()
            )
            if ours or _is_stale(holder):  # ours but held by no block: left over
                with contextlib.suppress(PermissionError):  # then O_EXCL fails again: locked
                    path.unlink(missing_ok=True)
                continue
            assert holder is not None
            raise ProjectLockedError(
                f"This project is being changed by {describe_holder(holder)}. "
                f"Wait for it to finish, or delete {path} if that process is gone."
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        return
    raise ProjectLockedError(  # pragma: no cover - another process raced us twice
        f"Could not take the project lock {path}; try again."
    )
