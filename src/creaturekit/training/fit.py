"""Stage 2 on a project: layer the settings, then train one run."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from creaturekit import constants as C
from creaturekit.config import FitSettings
from creaturekit.errors import CreatureKitError
from creaturekit.models import project_model, trust_model_path
from creaturekit.project import Project
from creaturekit.training.fit_config import FitConfig, resolve_fit_config
from creaturekit.training.run import CONFIG_FILE, VOCAB_FILE, RunFolder, run_folder, write_lora
from creaturekit.training.trainer import FitResult, Trainer


def fit_config(project: Project, preset: str | None = None, **flags: Any) -> FitConfig:
    """The run's config: preset, then ``[fit]`` of creaturekit.toml, then ``flags``.

    ``fit.model`` from creaturekit.toml applies unless it is the stock default, in which
    case the preset chooses (so ``preset = "toy"`` alone selects the toy base model).
    """
    settings = project.config.fit
    overrides = dict(settings.overrides)
    if settings.model != FitSettings().model:
        overrides.setdefault("model", settings.model)
    return resolve_fit_config(preset or settings.preset, overrides, flags)


def fit(
    project: Project,
    *,
    preset: str | None = None,
    run: str = "default",
    resume: bool = False,
    device: str = "auto",
    **flags: Any,
) -> FitResult:
    """Train (or with ``resume`` continue) the run ``run`` of ``project`` under its lock.

    A resumed run keeps its own saved settings; only ``flags`` that are set change them
    (``preset`` and creaturekit.toml do not).
    """
    folder = run_folder(project, run)
    if resume and (folder.path / CONFIG_FILE).is_file():
        config = folder.resume_config(flags)
        source = f"model in {folder.path / CONFIG_FILE}"
    else:
        config = fit_config(project, preset, **flags)
        source = f"fit.model in {C.CONFIG_NAME}"
    if flags.get("model") is not None:
        trust_model_path(flags["model"])  # the user's own choice
    else:
        project_model(config.model, project.root, source)  # named by a project file
    # Under `accelerate launch` only the main process (RANK 0) holds the project lock.
    lock = project.lock("fit") if is_main_process() else contextlib.nullcontext()
    with lock:
        return Trainer(project, config, run, resume=resume, device=device).fit()


def is_main_process() -> bool:
    """False in the non-main processes of a distributed launch."""
    return int(os.environ.get("RANK", "0")) == 0


def launch(num_processes: int, args: list[str]) -> int:
    """Run ``creaturekit ARGS`` in ``num_processes`` processes on this machine (torch elastic).

    Each process's ``Accelerator`` finds the distributed environment (one GPU each, or
    gloo on the CPU). Multi-node set-ups use ``accelerate launch -m creaturekit fit``.
    The processes import nothing from the current folder (see :func:`worker_args`).
    """
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=num_processes,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        run_id=uuid.uuid4().hex,
        max_restarts=0,
    )
    try:
        elastic_launch(config, sys.executable)(*worker_args(), *args)
    except ChildFailedError:
        return 1  # the failing process printed its own message
    except SignalException:
        return 130  # SIGTERM (or SIGHUP): each process saved a checkpoint, as on Ctrl-C
    return 0


#: Python 3.10 has no ``-P``: drop the current folder ('' on sys.path) before the import.
_WITHOUT_CWD = (
    "import runpy, sys; sys.path[:] = [p for p in sys.path if p]; "
    "runpy.run_module('creaturekit', run_name='__main__', alter_sys=True)"
)


def worker_args(version: tuple[int, int] = sys.version_info[:2]) -> list[str]:
    """Interpreter arguments that run ``creaturekit`` with an import path free of the
    current folder: a received project folder's ``typer.py`` must never run as code."""
    if version >= (3, 11):
        return ["-P", "-m", "creaturekit"]
    return ["-c", _WITHOUT_CWD]


def run_from_checkpoint(project: Project, run: str, step: int, name: str) -> RunFolder:
    """A new run ``name`` holding ``run`` as it was at its checkpoint of ``step``, so an
    earlier state can be mixed, evaluated and exported like a finished run."""
    import shutil

    from diffusers.utils import convert_state_dict_to_diffusers

    from creaturekit.conditioning.mapper import TokenMapper
    from creaturekit.training import checkpoint as ckpt
    from creaturekit.training.objective import lora_config, lora_targets

    source, target = run_folder(project, run), run_folder(project, name)
    folder = source.checkpoints / ckpt.checkpoint_name(step)
    if not folder.is_dir():
        found = ", ".join(p.name for p in ckpt.list_checkpoints(source.checkpoints)) or "none"
        raise CreatureKitError(f"The run {run!r} has no checkpoint of step {step} ({found}).")
    info = source.info()
    state = ckpt.read_checkpoint(folder, rank=0, lora=info.fit.rank > 0)
    with project.lock("fit"):
        target.check_new()
        target.path.mkdir(parents=True, exist_ok=True)
        for file in (CONFIG_FILE, VOCAB_FILE):
            shutil.copyfile(source.path / file, target.path / file)
        mapper = TokenMapper(TokenMapper.load(source.mapper).config)
        mapper.load_state_dict(state.mapper)
        mapper.save(target.mapper, extra={"base_model": info.base_model, "step": str(step)})
        if state.lora is not None:
            adapter = lora_config(
                info.fit.rank, info.fit.lora_alpha, lora_targets(info.fit.lora_layers)
            )
            write_lora(target.lora, convert_state_dict_to_diffusers(state.lora), adapter)
    return target
