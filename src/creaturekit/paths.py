"""Names that become paths, and paths read from project files, kept inside the project.

A project folder may come from a stranger: a run name typed by the user or a file path
found in ``images/manifest.jsonl`` must never reach outside the folder it belongs in.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from creaturekit.errors import UnsafePathError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_name(value: str, what: str = "name") -> str:
    """``value`` if it is a plain folder or file name (letters, digits, ``_ . -``); else refuse.

    No separators, no ``..``, no leading dot (hidden folders such as ``runs/.cache`` are
    creaturekit's own), at most 100 characters.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value.endswith("."):
        raise UnsafePathError(
            f"{what} {value!r} is not allowed: use letters, digits, '_', '.' and '-' "
            "(starting with a letter or digit, at most 100 characters), no folders."
        )
    return value


def inside(root: str | os.PathLike[str], relative: str | os.PathLike[str], what: str) -> Path:
    """``root / relative``, refused unless it stays inside ``root``.

    The check is on the name (absolute paths and ``..`` steps are refused); links inside
    the project, such as images imported with ``--link``, are followed as usual.
    ``what`` names where the path came from, e.g. "images/manifest.jsonl".
    """
    text = os.fspath(relative)
    normal = os.path.normpath(text) if text else ""
    if not normal or os.path.isabs(normal) or normal.split(os.sep)[0] in ("..", "~"):
        raise UnsafePathError(
            f"{what} names {text!r}, which is outside {root}; a project only reads files "
            "inside its own folder. Remove or fix that entry."
        )
    return Path(root) / normal
