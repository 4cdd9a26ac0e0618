"""Checkpoints that hold everything needed to continue a run, without pickle.

A checkpoint is a folder ``checkpoints/step-000250/`` with the mapper, the LoRA
weights, the optimizer state (tensors in safetensors, structure in JSON), the RNG
states and the position in the data (``state.json``). It is written to a temporary
folder and renamed into place, so a crash while saving leaves the previous checkpoints
intact. Only the newest ``keep`` checkpoints are retained.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from creaturekit import fsutil
from creaturekit.errors import CreatureKitError

STATE_FILE = "state.json"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_LAYOUT = "optimizer.json"
PREFIX = "step-"


def optimizer_to_files(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Save ``optimizer.state_dict()``: tensors to safetensors, the rest to JSON."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    save_file(tensors, str(folder / OPTIMIZER_TENSORS))
    fsutil.write_json(
        folder / OPTIMIZER_LAYOUT, {"param_groups": state["param_groups"], "scalars": scalars}
    )


def optimizer_from_files(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Restore what :func:`optimizer_to_files` wrote into ``optimizer``."""
    layout = json.loads((folder / OPTIMIZER_LAYOUT).read_text(encoding="utf-8"))
    slots: dict[int, dict[str, Any]] = {}
    for key, tensor in load_file(str(folder / OPTIMIZER_TENSORS)).items():
        pid, name = key.split(".", 1)
        slots.setdefault(int(pid), {})[name] = tensor
    for pid, values in layout["scalars"].items():
        slots.setdefault(int(pid), {}).update(values)
    optimizer.load_state_dict({"state": slots, "param_groups": layout["param_groups"]})


def rng_to_file(generators: dict[str, torch.Generator], path: Path) -> None:
    """Save the global torch RNG and named generators' states."""
    states = {name: g.get_state() for name, g in generators.items()}
    states["torch"] = torch.get_rng_state()
    save_file(states, str(path))


def rng_from_file(generators: dict[str, torch.Generator], path: Path) -> None:
    """Restore what :func:`rng_to_file` saved."""
    states = load_file(str(path))
    torch.set_rng_state(states.pop("torch"))
    for name, g in generators.items():
        g.set_state(states[name])


def rank_files(rank: int) -> tuple[str, str]:
    """File names of one process's RNG states (safetensors) and caption RNG (JSON)."""
    return f"rng-{rank}.safetensors", f"rank-{rank}.json"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:06d}"


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    done = [p for p in folder.glob(f"{PREFIX}*") if (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: p.name)


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


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The ``state.json`` of a checkpoint."""
    try:
        return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CreatureKitError(f"The checkpoint {checkpoint} is unreadable: {err}.") from err
