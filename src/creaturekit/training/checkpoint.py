"""Checkpoints that hold everything needed to continue a run, without pickle.

A checkpoint is a folder ``checkpoints/step-000250/`` with the mapper, the LoRA
weights, the optimizer state (tensors in safetensors, structure in JSON), the RNG
states and the position in the data (``state.json``, which also records each file's
SHA-256). It is written to a temporary folder and renamed into place, so a crash while
saving leaves the previous checkpoints intact. Only the newest ``keep`` checkpoints are
retained. :func:`read_checkpoint` reads and verifies everything before any of it is used;
a damaged checkpoint is set aside (``damaged-step-…``), never resumed from.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from creaturekit import fsutil

STATE_FILE = "state.json"
MAPPER_FILE = "mapper.safetensors"
LORA_FILE = "lora.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_LAYOUT = "optimizer.json"
PREFIX = "step-"
DAMAGED_PREFIX = "damaged-"
_NAME = re.compile(rf"{PREFIX}\d{{6,}}")


def optimizer_to_files(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Save ``optimizer.state_dict()``: tensors to safetensors, the rest to JSON.

    A slot may be a dict of tensors (bitsandbytes' 8-bit states); its tensors are saved
    as ``pid.slot.name`` and the slot is listed in the layout's ``nested``.
    """
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    nested: dict[str, list[str]] = {}
    for pid, slots in state["state"].items():
        for name, value in slots.items():
            inner = value if isinstance(value, dict) else {"": value}
            if isinstance(value, dict):
                nested.setdefault(str(pid), []).append(name)
            for sub, item in inner.items():
                key = f"{name}.{sub}" if sub else name
                if isinstance(item, torch.Tensor):
                    tensors[f"{pid}.{key}"] = item.detach().cpu().contiguous()
                elif sub:
                    scalars.setdefault(str(pid), {}).setdefault(name, {})[sub] = item
                else:
                    scalars.setdefault(str(pid), {})[name] = item
    fsutil.save_safetensors(tensors, folder / OPTIMIZER_TENSORS)
    layout = {"param_groups": state["param_groups"], "scalars": scalars}
    fsutil.write_json(folder / OPTIMIZER_LAYOUT, layout | ({"nested": nested} if nested else {}))


def read_optimizer(folder: Path) -> dict[str, Any]:
    """The optimizer state dict :func:`optimizer_to_files` wrote."""
    layout = fsutil.read_json(folder / OPTIMIZER_LAYOUT)
    nested = {int(pid): set(names) for pid, names in layout.get("nested", {}).items()}
    slots: dict[int, dict[str, Any]] = {}
    for pid, values in layout["scalars"].items():
        slots.setdefault(int(pid), {}).update(values)
    for key, tensor in fsutil.load_safetensors(folder / OPTIMIZER_TENSORS).items():
        pid_text, name = key.split(".", 1)
        pid = int(pid_text)
        slot, _, sub = name.partition(".")
        if slot in nested.get(pid, ()):
            slots.setdefault(pid, {}).setdefault(slot, {})[sub] = tensor
        else:
            slots.setdefault(pid, {})[name] = tensor
    return {"state": slots, "param_groups": layout["param_groups"]}


def rng_to_file(generators: dict[str, torch.Generator], path: Path) -> None:
    """Save the global torch RNG and named generators' states."""
    states = {name: g.get_state() for name, g in generators.items()}
    states["torch"] = torch.get_rng_state()
    fsutil.save_safetensors(states, path)


def rng_from_states(generators: dict[str, torch.Generator], states: dict[str, Any]) -> None:
    """Restore what :func:`rng_to_file` saved (read with ``fsutil.load_safetensors``)."""
    torch.set_rng_state(states["torch"])
    for name, g in generators.items():
        g.set_state(states[name])


def random_state(rng: random.Random) -> list[Any]:
    """A ``random.Random``'s state as JSON data."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def to_random_state(data: list[Any]) -> tuple[Any, ...]:
    """The inverse of :func:`random_state`."""
    return (data[0], tuple(data[1]), data[2])


def rank_files(rank: int) -> tuple[str, str]:
    """File names of one process's RNG states (safetensors) and caption RNG (JSON)."""
    return f"rng-{rank}.safetensors", f"rank-{rank}.json"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:06d}"


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in ``folder`` (complete or damaged: :func:`read_checkpoint` tells), oldest
    first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.fullmatch(p.name) and p.is_dir())


def commit_checkpoint(staging: Path, folder: Path, step: int, keep: int) -> Path:
    """Move a fully written staging folder into place; prune to the newest ``keep``."""
    final = folder / checkpoint_name(step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def staging_dir(folder: Path, step: int) -> Path:
    """A fresh temporary folder for the checkpoint of ``step``."""
    staging = folder / f".tmp-{checkpoint_name(step)}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of a checkpoint being written (kept in its state.json)."""
    return {p.name: fsutil.sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The ``state.json`` of a checkpoint (damage: DamagedFileError)."""
    path = checkpoint / STATE_FILE
    if not path.is_file():
        raise fsutil.damaged(path, "missing")
    state = fsutil.read_json(path)
    if not isinstance(state, dict) or not {"step", "epoch", "position"} <= state.keys():
        raise fsutil.damaged(path, "not a checkpoint state")
    return state


@dataclass
class Checkpoint:
    """Everything one process reads from a checkpoint, read and checked before any use."""

    path: Path
    state: dict[str, Any]
    mapper: dict[str, torch.Tensor]
    lora: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]
    captions: list[Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def cursor(self) -> tuple[int, int]:
        return int(self.state["epoch"]), int(self.state["position"])


def read_checkpoint(folder: Path, rank: int, lora: bool) -> Checkpoint:
    """Read and verify (file hashes, where recorded) the checkpoint ``folder`` for ``rank``.

    Raises DamagedFileError for a missing, truncated or altered file.
    """
    state = read_state(folder)
    for name, digest in dict(state.get("files", {})).items():
        path = folder / name
        if not path.is_file() or fsutil.sha256_file(path) != digest:
            raise fsutil.damaged(path, "missing or changed since it was written")
    rng_file, rank_file = rank_files(rank)
    try:
        return Checkpoint(
            path=folder,
            state=state,
            mapper=fsutil.load_safetensors(folder / MAPPER_FILE),
            lora=fsutil.load_safetensors(folder / LORA_FILE) if lora else None,
            optimizer=read_optimizer(folder),
            rng=fsutil.load_safetensors(folder / rng_file),
            captions=fsutil.read_json(folder / rank_file),
        )
    except FileNotFoundError as err:
        raise fsutil.damaged(err.filename, "missing") from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise fsutil.damaged(folder, f"unexpected content: {err}") from None


def set_aside(checkpoint: Path) -> Path:
    """Rename a damaged checkpoint to ``damaged-step-…`` (kept for inspection, not resumed)."""
    target = checkpoint.with_name(DAMAGED_PREFIX + checkpoint.name)
    n = 1
    while target.exists():
        n += 1
        target = checkpoint.with_name(f"{DAMAGED_PREFIX}{checkpoint.name}-{n}")
    os.replace(checkpoint, target)
    return target
