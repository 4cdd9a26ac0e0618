"""Train the toy base model: ``python -m tools.toy.train_base [--resume]``.

One command runs the stages in turn (``--stage vae|diffusion`` runs one), skipping a
stage whose result is already saved. Work (checkpoints, logs, the diffusion stage's
latent pool) goes to ``--work/<stage>/`` (default ``.cache/toy-base/``, not committed);
``--minutes``, Ctrl-C or SIGTERM stop cleanly with a checkpoint and ``--resume``
continues exactly where it stopped (every step's randomness is derived from the seed and
the step number). A stage's result is saved in fp16 into the pipeline folder ``--out``
once it passes its gate (see :mod:`base_stages`): the VAE stage its ``vae/``, the
diffusion stage the whole pipeline; each stage's figures go to its ``training.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch

from creaturekit import fsutil
from creaturekit.errors import CreatureKitError
from creaturekit.models import BUNDLED
from creaturekit.training import checkpoint as ckpt
from tools.toy.base_stages import (
    CONFIGS,
    STAGES,
    DiffusionConfig,
    DiffusionStage,
    Stage,
    StageConfig,
    stage_finished,
)

LOG_NAME = "log.jsonl"
CONFIG_NAME = "config.json"
KEEP_CHECKPOINTS = 2
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORK = REPO_ROOT / ".cache" / "toy-base"


class TrainBaseError(CreatureKitError):
    """A base-model stage cannot start or go on."""


def lr_at(step: int, config: StageConfig) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    t = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator all of ``step``'s randomness comes from (so resume is exact)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _save_checkpoint(
    stage: Stage, optimizer: torch.optim.Optimizer, folder: Path, step: int, seconds: float
) -> Path:
    staging = ckpt.staging_dir(folder, step)
    try:
        for name, module in stage.modules.items():
            state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
            fsutil.save_safetensors(state, staging / f"{name}.safetensors")
        ckpt.optimizer_to_files(optimizer, staging)
        state_json = {"step": step, "seconds": seconds, "config": asdict(stage.config)}
        fsutil.write_json(staging / ckpt.STATE_FILE, state_json)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ckpt.commit_checkpoint(staging, folder, step, KEEP_CHECKPOINTS)


def _load_checkpoint(
    stage: Stage, optimizer: torch.optim.Optimizer, folder: Path
) -> tuple[int, float]:
    state = fsutil.read_json(folder / ckpt.STATE_FILE)
    if state["config"] != json.loads(json.dumps(asdict(stage.config))):
        raise TrainBaseError(
            f"The checkpoint {folder} was made with other settings; resume with the same "
            "options (--set) or start afresh in another --work folder."
        )
    for name, module in stage.modules.items():
        module.load_state_dict(fsutil.load_safetensors(folder / f"{name}.safetensors"))
    optimizer.load_state_dict(ckpt.read_optimizer(folder))
    return int(state["step"]), float(state["seconds"])


@contextlib.contextmanager
def _stop_requests() -> Iterator[Callable[[], bool]]:
    """Within the block, Ctrl-C or SIGTERM asks for a stop after the current step.

    Yields a function telling whether a stop was asked; a second Ctrl-C aborts at once.
    """
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked.is_set
        return

    def ask(signum: int, frame: Any) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        print("Stopping after this step with a checkpoint (Ctrl-C again to abort).", flush=True)

    previous = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked.is_set
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _append_log(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")


def _optimisation_step(
    stage: Stage, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], step: int
) -> tuple[float, dict[str, float]]:
    """One step of ``stage`` (all its randomness from the seed and ``step``)."""
    config = stage.config
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, config)
    for module in stage.modules.values():
        module.train()
    loss, logs = stage.loss(step, step_generator(config.seed, step))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    optimizer.step()
    return loss.item(), logs


def train_stage(
    stage: Stage,
    work: Path,
    *,
    resume: bool = False,
    minutes: float | None = None,
    stop_after: int | None = None,
    echo: bool = False,
) -> int:
    """Train ``stage`` from step 0 (or its newest checkpoint) until done or stopped.

    Stops after ``minutes`` of wall time, at step ``stop_after``, when the stage is done,
    or on Ctrl-C / SIGTERM (after the current step), with a checkpoint. Returns the number
    of steps done.
    """
    config = stage.config
    checkpoints, log_path = work / "checkpoints", work / LOG_NAME
    params = [p for m in stage.modules.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    step, seconds = 0, 0.0
    existing = ckpt.list_checkpoints(checkpoints)
    if existing and not resume:
        raise TrainBaseError(f"{work} already holds checkpoints; pass --resume or another --work.")
    if existing:
        step, seconds = _load_checkpoint(stage, optimizer, existing[-1])
        rows = fsutil.read_jsonl(log_path) if log_path.is_file() else []
        fsutil.write_jsonl(log_path, [r for r in rows if r["step"] <= step])
    else:
        work.mkdir(parents=True, exist_ok=True)
        fsutil.write_json(work / CONFIG_NAME, {"stage": stage.name, **asdict(config)})
        log_path.unlink(missing_ok=True)
    began = time.perf_counter() - seconds
    deadline = None if minutes is None else time.perf_counter() + 60 * minutes
    last = min(stop_after if stop_after is not None else config.steps, config.steps)
    with _stop_requests() as stop_asked:
        while step < last:
            loss, logs = _optimisation_step(stage, optimizer, params, step)
            step += 1
            row: dict[str, Any] = {}
            if step % config.log_every == 0:
                row = {"loss": round(loss, 5), "lr": optimizer.param_groups[0]["lr"], **logs}
            if step % config.eval_every == 0 or step == config.steps:
                row.update(stage.evaluate(step))
            if row:
                row.update(step=step, seconds=round(time.perf_counter() - began, 1))
                _append_log(log_path, row)
                if echo:
                    print(json.dumps(row, sort_keys=True), flush=True)
            out_of_time = deadline is not None and time.perf_counter() > deadline
            stop = out_of_time or stop_asked() or stage.done
            if step % config.checkpoint_every == 0 or step == last or stop:
                _save_checkpoint(stage, optimizer, checkpoints, step, time.perf_counter() - began)
            if stop:
                break
    return step


def configured(name: str, settings: list[str]) -> StageConfig:
    """Stage ``name``'s default configuration with ``KEY=VALUE`` settings applied."""
    config = CONFIGS[name]()
    known = {field.name for field in fields(config)}
    changes: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise ValueError(
                f"--set {setting!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(known))}"
            )
        kind = type(getattr(config, key))
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--set {setting!r}: {value!r} is not a number") from None
        if kind is int and not number.is_integer():
            raise ValueError(f"--set {setting!r}: {key} takes a whole number")
        changes[key] = kind(number)
    return replace(config, **changes)


def main(argv: list[str] | None = None) -> None:
    """Run the toy base model's training: every unfinished stage in turn, or one stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=["all", *STAGES], default="all")
    parser.add_argument("--out", type=Path, default=BUNDLED["toy"], help="Final pipeline folder.")
    parser.add_argument("--work", type=Path, help="Checkpoints, logs (default .cache/toy-base).")
    parser.add_argument("--minutes", type=float, help="Stop (with a checkpoint) after this.")
    parser.add_argument("--resume", action="store_true", help="Continue the newest checkpoint.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    parser.add_argument(
        "--warm-start",
        action="store_true",
        help="Diffusion stage: train the saved UNet and text encoder further (a new phase, "
        "its work in --work/diffusion-from-STEP) instead of starting from scratch.",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Change the stage's configuration (e.g. a short low-lr phase: --set steps=1500 "
        "--set lr=5e-5); needs one --stage.",
    )
    args = parser.parse_args(argv)
    if args.warm_start and args.stage != "diffusion":
        parser.error("--warm-start needs --stage diffusion")
    if args.set and args.stage == "all":
        parser.error("--set needs one --stage")
    torch.set_num_threads(args.threads)
    deadline = None if args.minutes is None else time.monotonic() + 60 * args.minutes
    names = list(STAGES) if args.stage == "all" else [args.stage]
    try:
        configs = {name: configured(name, args.set) for name in names}
    except ValueError as error:
        parser.error(str(error))
    for name in names:
        if args.stage == "all" and stage_finished(name, args.out):
            print(f"{name}: finished already (its result is in {args.out})")
            continue
        work = (args.work or DEFAULT_WORK) / name
        config = configs[name]
        stage: Stage
        if isinstance(config, DiffusionConfig):
            stage = DiffusionStage(
                out=args.out,
                config=config,
                cache=work / "pool.safetensors",
                warm_start=args.warm_start,
            )
            if args.warm_start:  # a new phase: its own work folder
                work = work.with_name(f"{name}-from-{sum(stage.phases)}")
        else:
            stage = STAGES[name](out=args.out, config=config)
        minutes = None if deadline is None else max(0.0, deadline - time.monotonic()) / 60
        with torch.backends.mkldnn.flags(enabled=stage.onednn):
            done = train_stage(stage, work, resume=args.resume, minutes=minutes, echo=True)
        finished = stage.done or done >= stage.config.steps
        state = "finished" if finished else "stopped; continue with --resume"
        print(f"{name}: step {done}/{stage.config.steps} ({state})")
        if not finished:
            break


if __name__ == "__main__":
    main()
