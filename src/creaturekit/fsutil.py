"""Atomic file writes: write to a temporary file in the same folder, then rename.

A reader (or a crash, or Ctrl-C) never sees a half-written file: it sees the old
file or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import tomli_w

from creaturekit.errors import DamagedFileError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the name's start only: a long name plus the temp affixes could exceed 255 bytes
    prefix = f".{path.name.encode()[:100].decode(errors='ignore')}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp's (and safetensors') 0600 would make shared projects unreadable
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def staging_folder(parent: str | os.PathLike[str], prefix: str) -> Path:
    """A new empty folder in ``parent`` to fill and then rename into place (umask modes)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(folder, 0o777 & ~_umask())
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` when the block succeeds."""
    with atomic_path(path) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` (UTF-8)."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data``."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON (NaN and infinity as null)."""
    write_text(path, json_text(obj, indent=2) + "\n")


def json_text(obj: Any, indent: int | None = None) -> str:
    """Standard JSON of ``obj``: NaN and infinities, which other tools cannot read, are null."""
    return json.dumps(_finite(obj), indent=indent, sort_keys=True, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_jsonl(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Atomically write one JSON object per line."""
    write_text(path, "".join(json_text(r) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file of objects; blank lines are ignored (damage: DamagedFileError)."""
    try:
        with open(path, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    except (UnicodeDecodeError, ValueError) as err:
        raise damaged(path, err) from None
    if not all(isinstance(row, dict) for row in rows):
        raise damaged(path, "a line is not a JSON object")
    return rows


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file that creaturekit wrote (damage: DamagedFileError)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise damaged(path, err) from None


def load_safetensors(path: str | os.PathLike[str], framework: str = "pt") -> dict[str, Any]:
    """Every tensor of a safetensors file (``framework`` "pt" or "numpy"); never unpickles."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework=framework) as fh:
            return {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors raises its own SafetensorError, not an OSError
        raise damaged(path, err) from None


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a safetensors file's header (damage: DamagedFileError)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            return dict(fh.metadata() or {})
    except FileNotFoundError:
        raise
    except Exception as err:
        raise damaged(path, err) from None


def save_safetensors(
    tensors: dict[str, Any], path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> None:
    """Atomically write torch or numpy ``tensors`` as safetensors, with umask file modes.

    safetensors' own errors (a full disk among them) become an OSError naming the file.
    """
    numpy = bool(tensors) and not hasattr(next(iter(tensors.values())), "detach")
    if numpy:
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file  # type: ignore[assignment]
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except OSError:
            raise
        except Exception as err:
            raise write_error(err, path) from err


def write_error(err: Exception, path: str | os.PathLike[str]) -> OSError:
    """safetensors' error while writing ``path`` as an OSError (its errno where it names one,
    e.g. "IoError(Os { code: 28, kind: StorageFull, ... })" for a full disk)."""
    code = re.search(r"\bcode: (\d+)", str(err))
    number = int(code[1]) if code else errno.EIO
    return OSError(number, os.strerror(number) if code else str(err), str(path))


def damaged(path: str | os.PathLike[str], reason: object) -> DamagedFileError:
    """The error for a damaged file, with the command that rebuilds it."""
    return DamagedFileError(f"{path} is damaged or incomplete ({reason}). {_rebuild_hint(path)}")


#: What rebuilds a file in a stage's sub-folder (``runs/<name>/...``), by stage.
_REBUILD = {
    "runs": "Fit the run again under a new name (`creaturekit fit --run NEW_NAME`).",
    "eval": "Re-create it with `creaturekit eval --run {name}`.",
    "mixes": "Delete the folder mixes/{name} and mix again.",
}


def _rebuild_hint(path: str | os.PathLike[str]) -> str:
    parts = Path(path).parts
    if "checkpoints" in parts:
        return "Delete that checkpoint folder; `fit --resume` then continues from the one before."
    for stage, hint in _REBUILD.items():
        if stage in parts and parts.index(stage) + 1 < len(parts) - 1:
            return hint.format(name=parts[parts.index(stage) + 1])
    if "discovery" in parts:
        return "Re-create it with `creaturekit discover`."
    if "images" in parts:
        return "Re-import the images with `creaturekit init --force DIR --images SRC`."
    return "Restore it from a backup or delete it and re-run the command that wrote it."


def write_toml(path: str | os.PathLike[str], obj: dict[str, Any]) -> None:
    """Atomically write ``obj`` as TOML."""
    write_text(path, tomli_w.dumps(obj))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
