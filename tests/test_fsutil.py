"""Atomic writes keep the usual file modes (projects are shared, zipped, moved)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from creaturekit import fsutil


def test_atomic_files_and_staging_folders_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fsutil.write_json(tmp_path / "a.json", {"x": 1})
        folder = fsutil.staging_folder(tmp_path, ".stage.")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
