"""The project lock: a second mutating command is refused by name; stale locks are taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from creaturekit import init_project
from creaturekit.cli import app
from creaturekit.errors import ProjectLockedError


def _hold(project_root: Path, pid: int, command: str = "fit") -> Path:
    lock = project_root / ".creaturekit.lock"
    lock.write_text(
        json.dumps(
            {"command": command, "pid": pid, "host": socket.gethostname(), "started": time.time()}
        )
    )
    return lock


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_live_holder_blocks_with_its_name(
    tmp_path: Path, image_folder: Path, runner: CliRunner
) -> None:
    project = init_project(tmp_path / "proj", images=image_folder)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _hold(project.root, sleeper.pid)
        with (
            pytest.raises(ProjectLockedError, match=f"creaturekit fit.*pid {sleeper.pid}"),
            project.lock("discover"),
        ):
            pass
        result = runner.invoke(
            app, ["init", str(project.root), "--force", "--images", str(image_folder)]
        )
        assert result.exit_code == 1
        assert "being changed by" in result.stderr and str(sleeper.pid) in result.stderr
        assert lock.exists()  # the holder's lock is untouched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_is_taken_over(tmp_path: Path, image_folder: Path) -> None:
    project = init_project(tmp_path / "proj", images=image_folder)
    lock = _hold(project.root, _dead_pid())
    with project.lock("discover"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_half_written_lock_is_stale(tmp_path: Path, image_folder: Path) -> None:
    project = init_project(tmp_path / "proj", images=image_folder)
    (project.root / ".creaturekit.lock").write_text("{")
    with project.lock("discover"):
        pass


def test_lock_released_on_error(tmp_path: Path, image_folder: Path) -> None:
    project = init_project(tmp_path / "proj", images=image_folder)
    with pytest.raises(RuntimeError), project.lock("fit"):
        raise RuntimeError("boom")
    assert not (project.root / ".creaturekit.lock").exists()


def test_threads_of_one_process_share_the_lock_until_the_last_one_ends(tmp_path: Path) -> None:
    """The studio's worker writes a mix while a request thread renames a part: the lock
    file stays until both are done (it used to go when the first one ended)."""
    import threading

    from creaturekit.lock import project_lock

    lock = tmp_path / ".creaturekit.lock"
    tmp_path.mkdir(exist_ok=True)
    inside, leave = threading.Event(), threading.Event()

    def worker() -> None:
        with project_lock(lock, "mix"):
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=worker)
    with project_lock(lock, "parts"):
        thread.start()
        assert inside.wait(10)
    assert lock.is_file()  # the worker still holds it ...
    other = subprocess.run(  # ... so another process is refused
        [
            sys.executable,
            "-c",
            "import sys; from creaturekit.lock import project_lock\n"
            f"with project_lock(__import__('pathlib').Path({str(lock)!r}), 'fit'): pass",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert other.returncode == 1 and "being changed by `creaturekit parts`" in other.stderr
    leave.set()
    thread.join(10)
    assert not lock.exists()
