"""The fit trainer: a typed config, small steps, checkpoints that resume exactly.

``Trainer(project, config, run).fit()`` trains the token mapper and the UNet's LoRA on
the project's discovery result and writes ``runs/<run>/``. Checkpoints come every
``checkpoint_every`` steps or ``checkpoint_minutes`` minutes. Ctrl-C or SIGTERM saves a
checkpoint first; a NaN/inf loss (or weights) stops the run and keeps the last good
checkpoint; ``resume=True`` continues from the newest intact checkpoint and ends with the
same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import random
import shlex
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from creaturekit import fsutil
from creaturekit.conditioning.base_model import BaseModel, load_base_model
from creaturekit.conditioning.mapper import MapperConfig, TokenMapper
from creaturekit.conditioning.pipeline import build_pipeline, contact_sheet, generate
from creaturekit.conditioning.text import TextConditioning
from creaturekit.conditioning.tokens import part_token
from creaturekit.config import fill_template
from creaturekit.errors import ConfigError, CreatureKitError, DamagedFileError, StageMissingError
from creaturekit.progress import make_progress, progress_enabled, stderr_console, warn
from creaturekit.project import Project, find_project_root
from creaturekit.training import checkpoint as ckpt
from creaturekit.training.attention import cross_attention_sides, install_attention_recorder
from creaturekit.training.captions import training_caption
from creaturekit.training.data import (
    FitExample,
    cached_latents,
    encode_latents,
    examples_from_discovery,
    latent_cache_key,
    load_pixels,
    next_indices,
)
from creaturekit.training.distinctness import distinctness
from creaturekit.training.fit_config import OPTIMIZERS, FitConfig, lr_scale
from creaturekit.training.objective import Objective, add_lora, lora_targets
from creaturekit.training.recognition import code_recognition, load_probes
from creaturekit.training.run import RunVocab, VocabPart, run_folder, write_lora


class FitError(CreatureKitError):
    """Training cannot go on (NaN loss, incompatible resume, bad discovery input)."""


class FitInterrupted(CreatureKitError):
    """Ctrl-C or SIGTERM during fit: a checkpoint was saved."""

    exit_code = 130


@dataclass
class FitResult:
    """What a finished (or interrupted) fit produced."""

    run_dir: Path
    step: int
    loss: float | None
    seconds: float


class Trainer:
    """Stage 2 on one project: mapper + LoRA + attention loss, resumable."""

    def __init__(
        self,
        project: Project,
        config: FitConfig,
        run: str = "default",
        *,
        resume: bool = False,
        device: str = "auto",
    ) -> None:
        self.project = project
        self.config = config.validate()
        self.run = run_folder(project, run)
        self.resume = resume
        self.device = device

    # -- set-up ---------------------------------------------------------------------
    def _discovery(self) -> Any:
        from creaturekit.discovery.discover import load_result
        from creaturekit.discovery.result import RESULT_FILE

        if not (self.project.discovery_dir / RESULT_FILE).is_file():
            raise StageMissingError(
                "fit needs a discovery result: run `creaturekit discover` first."
            )
        result = load_result(self.project)  # a damaged result names its file
        if result.images_hash != self.project.images_hash():
            raise StageMissingError(
                "The project's images changed since the last discovery; run "
                "`creaturekit discover` again before fitting."
            )
        return result

    def _setup(self) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        from creaturekit.models import select_device, select_dtype

        cfg = self.config
        self.result = self._discovery()
        self.examples: list[FitExample] = examples_from_discovery(
            self.project.images_dir, self.result
        )
        device = select_device(self.device)
        dtype = select_dtype(device, cfg.precision)
        precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "no")
        # accelerate keeps one precision per process: a later fit (a notebook, the studio)
        # may ask for another, so its state (not the process group's) starts afresh
        AcceleratorState._reset_state()
        self.accelerator = acc = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
        # frozen weights in the compute precision (half the memory); the VAE stays fp32
        self.base: BaseModel = load_base_model(cfg.model, self.project.root, dtype=dtype)
        base = self.base
        for module in (*base.text_encoders, base.vae, base.unet):
            module.requires_grad_(False)
            module.to(self.accelerator.device)
        parts = self.result.parts
        self.conditioning = TextConditioning.of(base)
        self.token_ids = self.conditioning.add_part_tokens(len(parts))
        self.sizes = self._original_sizes() if base.family == "sdxl" else []
        torch.manual_seed(cfg.seed)
        self.mapper = TokenMapper(
            MapperConfig(
                num_codes=tuple(p.subconcepts for p in parts),
                dim=sum(self.conditioning.widths),
                depth=cfg.projector_depth,
                split=self.conditioning.mapper_split,
            ),
            code_std=cfg.code_init_std,
        ).to(self.accelerator.device)
        lora = (
            add_lora(base.unet, cfg.rank, cfg.lora_alpha, lora_targets(cfg.lora_layers))
            if (cfg.rank > 0)
            else []
        )
        for param in lora:  # trained weights stay fp32 (mixed precision computes in half)
            param.data = param.data.float()
        if cfg.gradient_checkpointing:
            base.unet.enable_gradient_checkpointing()
        self._check_attention_resolution()
        store = install_attention_recorder(base.unet, cfg.attn_resolution)
        self.params = [*self.mapper.parameters(), *lora]
        groups: list[dict[str, Any]] = [{"params": self.params}]
        if lora and separate_lora_lr(cfg):  # one group otherwise (older runs)
            groups = [
                {"params": list(self.mapper.parameters())},
                {"params": lora, "lr": cfg.lora_lr},
            ]
        self.optimizer = acc.prepare_optimizer(
            make_optimizer(cfg.optimizer, groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        )
        # Several processes: the trained modules all-reduce their gradients (DDP).
        train_unet, train_mapper = base.unet, self.mapper
        if acc.num_processes > 1:
            train_mapper = acc.prepare_model(self.mapper)
            if lora:
                train_unet = acc.prepare_model(base.unet)
        self.objective = Objective(
            self.conditioning,
            train_unet,
            base.scheduler,
            train_mapper,
            store,
            cfg.attn_loss,
            cfg.snr_gamma or None,
            cfg.resolution,
            self._attention_weights(),
        )
        self.latents = None
        if cfg.cache_latents:
            key = latent_cache_key(base.ref.location, cfg.resolution, self.examples)
            self.latents = cached_latents(
                base.vae, self.examples, cfg.resolution, self.project.runs_dir / ".cache", key
            )
        rank_seed = cfg.seed + 1000 * acc.process_index  # each process its own draws
        self.data_gen = torch.Generator().manual_seed(rank_seed + 1)
        self.noise_gen = torch.Generator(device=acc.device).manual_seed(rank_seed + 2)
        self.caption_rng = random.Random(rank_seed + 3)

    def _attention_weights(self) -> torch.Tensor | None:
        """Each part's weight within the attention loss (None: all 1)."""
        if self.config.attn_bg_weight == 1.0:
            return None
        weights = torch.ones(len(self.result.parts))
        weights[self.result.background_index] = self.config.attn_bg_weight
        return weights

    def _original_sizes(self) -> list[tuple[int, int]]:
        """Each example's (height, width) before it is squashed, as the project's manifest
        recorded it at import (SDXL's size conditioning)."""
        recorded = {r.file: (r.height, r.width) for r in self.project.manifest()}
        images = self.project.images_dir
        return [recorded[ex.path.relative_to(images).as_posix()] for ex in self.examples]

    def _check_attention_resolution(self) -> None:
        cfg = self.config
        if cfg.attn_loss <= 0:
            return
        sides = cross_attention_sides(self.base.unet.config, cfg.resolution // self.base.vae_scale)
        if cfg.attn_resolution not in sides:
            raise FitError(
                f"attn_resolution {cfg.attn_resolution} has no cross-attention in this UNet at "
                f"{cfg.resolution} px; choose one of {sorted(sides)}."
            )

    # -- one step -------------------------------------------------------------------
    def _batch(
        self, indices: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor, list[str], list[list[int]], list[tuple[int, int]]]:
        cfg = self.config
        flips = (
            (torch.rand(len(indices), generator=self.data_gen) < 0.5).tolist()
            if (cfg.flip)
            else [False] * len(indices)
        )
        category = self.project.config.project.category
        captions, codes, masks, latents = [], [], [], []
        for i, flip in zip(indices, flips, strict=True):
            ex = self.examples[i]
            text, ordered = training_caption(
                ex.codes, self.caption_rng, category, cfg.template_probability
            )
            captions.append(text)
            codes.append(ordered)
            mask = torch.from_numpy(ex.mask.astype("int64"))
            if self.latents is not None:
                lat = self.latents[i]
            else:
                lat = encode_latents(self.base.vae, load_pixels(ex.path, cfg.resolution)[None])[0]
            if flip:
                mask, lat = mask.flip(-1), lat.flip(-1)
            masks.append(mask)
            latents.append(lat)
        sizes = [self.sizes[i] for i in indices] if self.sizes else []
        return torch.stack(latents), torch.stack(masks), captions, codes, sizes

    def _optimisation_step(
        self, cursor: tuple[int, int]
    ) -> tuple[dict[str, float], tuple[int, int]]:
        cfg = self.config
        epoch, pos = cursor
        logs_sum: dict[str, float] = {}
        self.optimizer.zero_grad(set_to_none=True)
        acc = self.accelerator
        for _ in range(cfg.grad_accum):
            span, (epoch, pos) = next_indices(
                len(self.examples), cfg.seed, (epoch, pos), cfg.batch_size * acc.num_processes
            )
            first = acc.process_index * cfg.batch_size
            latents, masks, captions, codes, sizes = self._batch(
                span[first : first + cfg.batch_size]
            )
            device = self.accelerator.device
            try:
                with self.accelerator.autocast():
                    loss, logs = self.objective(
                        latents.to(device),
                        captions,
                        codes,
                        masks.to(device),
                        self.noise_gen,
                        sizes or None,
                    )
            except torch.OutOfMemoryError as err:
                raise FitError(
                    f"A batch of {cfg.batch_size} does not fit in memory; lower --batch-size "
                    "and raise --grad-accum to keep the effective batch (or enable "
                    "--gradient-checkpointing)."
                ) from err
            if not all(math.isfinite(v) for v in logs.values()):
                raise self._diverged("loss")
            self.accelerator.backward(loss / cfg.grad_accum)
            for k, v in logs.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + v / cfg.grad_accum
        if cfg.grad_clip > 0:
            self.accelerator.clip_grad_norm_(self.params, cfg.grad_clip)
        self.optimizer.step()
        return logs_sum, (epoch, pos)

    # -- checkpoints and outputs ----------------------------------------------------
    def _rng_snapshot(self) -> tuple[Any, ...]:
        return (
            torch.get_rng_state(),
            self.data_gen.get_state(),
            self.noise_gen.get_state(),
            self.caption_rng.getstate(),
        )

    def _rng_restore(self, snapshot: tuple[Any, ...]) -> None:
        torch.set_rng_state(snapshot[0])
        self.data_gen.set_state(snapshot[1])
        self.noise_gen.set_state(snapshot[2])
        self.caption_rng.setstate(snapshot[3])

    def _diverged(self, what: str) -> FitError:
        lower = ("--lr", f"{min(self.config.lr / 10, FitConfig().lr):g}", "--precision", "fp32")
        if ckpt.list_checkpoints(self.run.checkpoints):
            then = (
                "The last good checkpoint is kept; continue from it with a lower learning "
                f"rate or in fp32: `{self.resume_command(*lower)}`."
            )
        else:
            then = (
                "No checkpoint was saved yet; run the fit again with a lower learning rate "
                f"or in fp32 ({' '.join(lower)})."
            )
        return FitError(f"The {what} became NaN/inf; training stopped. {then}")

    def _check_weights(self) -> None:
        """Refuse to save NaN/inf weights: a diverged step must not become a checkpoint."""
        with torch.no_grad():
            if not all(bool(torch.isfinite(p).all()) for p in self.params):
                raise self._diverged("weights")

    def resume_command(self, *flags: str) -> str:
        """The command line that continues this run (with ``flags`` added)."""
        return self.fit_command("--resume", *flags)

    def fit_command(self, *flags: str) -> str:
        """The command line that fits this run (``-C`` unless the current folder is in
        the project; ``--num-processes`` as now)."""
        words = ["creaturekit", "fit"]
        root = self.project.root.resolve()
        try:
            here = find_project_root()
        except CreatureKitError:
            here = None
        if here != root:
            words += ["-C", str(root)]
        words += ["--run", self.run.path.name, *flags]
        processes = self.accelerator.num_processes if hasattr(self, "accelerator") else 1
        if processes > 1:
            words += ["--num-processes", str(processes)]
        return shlex.join(words)

    def _save_checkpoint(self, step: int, cursor: tuple[int, int]) -> Path:
        try:
            path = self._write_checkpoint(step, cursor)
        except OSError as err:
            raise FitError(
                f"Could not save the checkpoint of step {step} in {self.run.checkpoints} "
                f"({_os_problem(err)}); the previous checkpoints are intact. "
                f"{_os_fix(err)}, then `{self.resume_command()}`."
            ) from err
        self._saved_at = time.monotonic()
        return path

    def _write_checkpoint(self, step: int, cursor: tuple[int, int]) -> Path:
        acc = self.accelerator
        final = self.run.checkpoints / ckpt.checkpoint_name(step)
        staging = final.with_name(f".tmp-{final.name}")
        if acc.is_main_process:
            ckpt.staging_dir(self.run.checkpoints, step)
        acc.wait_for_everyone()
        try:
            rng_file, rank_file = ckpt.rank_files(acc.process_index)
            ckpt.rng_to_file({"data": self.data_gen, "noise": self.noise_gen}, staging / rng_file)
            fsutil.write_json(staging / rank_file, ckpt.random_state(self.caption_rng))
            acc.wait_for_everyone()
            if acc.is_main_process:
                mapper = {
                    k: v.detach().cpu().contiguous() for k, v in self.mapper.state_dict().items()
                }
                fsutil.save_safetensors(mapper, staging / ckpt.MAPPER_FILE)
                if self.config.rank > 0:
                    fsutil.save_safetensors(self._lora_state(), staging / ckpt.LORA_FILE)
                ckpt.optimizer_to_files(self.optimizer, staging)
                state = {
                    "step": step,
                    "epoch": cursor[0],
                    "position": cursor[1],
                    "processes": acc.num_processes,
                    "stamp": self.result.stamp,
                    "files": ckpt.file_hashes(staging),
                }
                fsutil.write_json(staging / ckpt.STATE_FILE, state)
                ckpt.commit_checkpoint(
                    staging, self.run.checkpoints, step, self.config.keep_checkpoints
                )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        acc.wait_for_everyone()
        return final

    def _lora_state(self) -> dict[str, torch.Tensor]:
        from peft.utils import get_peft_model_state_dict

        return {
            k: v.detach().cpu().contiguous()
            for k, v in get_peft_model_state_dict(self.base.unet).items()
        }

    def _read_resume_checkpoint(self) -> ckpt.Checkpoint:
        """The newest intact checkpoint; damaged newer ones are set aside, with a warning."""
        acc = self.accelerator
        damaged: list[Path] = []
        found = None
        for folder in reversed(ckpt.list_checkpoints(self.run.checkpoints)):
            try:
                found = ckpt.read_checkpoint(folder, acc.process_index, self.config.rank > 0)
                break
            except DamagedFileError:
                damaged.append(folder)
        acc.wait_for_everyone()
        if found is None:
            raise FitError(
                f"No intact checkpoint to resume in {self.run.checkpoints}: "
                f"{', '.join(p.name for p in damaged)} damaged or incomplete. Start again "
                f"under another run name (--run NAME)."
            )
        if acc.is_main_process:
            for folder in damaged:
                aside = ckpt.set_aside(folder)
                warn(
                    f"checkpoint {folder.name} of run {self.run.path.name!r} is damaged or "
                    f"incomplete; it was set aside as checkpoints/{aside.name}. Resuming "
                    f"from {found.path.name} instead."
                )
        return found

    def _load_checkpoint(self, found: ckpt.Checkpoint) -> tuple[int, tuple[int, int]]:
        from peft.utils import set_peft_model_state_dict

        state = found.state
        if state.get("stamp") != self.result.stamp:
            raise FitError(
                "The checkpoint was trained on another discovery result; start a "
                "new run (--run NAME) instead of --resume."
            )
        if state.get("processes", 1) != self.accelerator.num_processes:
            raise FitError(
                f"The checkpoint was written by {state.get('processes', 1)} processes; resume "
                "with the same number of processes."
            )
        self.mapper.load_state_dict(found.mapper)
        if found.lora is not None:
            set_peft_model_state_dict(self.base.unet, found.lora)
        self.optimizer.load_state_dict(found.optimizer)  # its rates: _set_learning_rates
        ckpt.rng_from_states({"data": self.data_gen, "noise": self.noise_gen}, found.rng)
        self.caption_rng.setstate(ckpt.to_random_state(found.captions))
        return found.step, found.cursor

    def _set_learning_rates(self, step: int) -> float:
        """Set every group's rate for optimisation step ``step`` from the config (a resumed
        run may change --lr), the warm-up and the schedule; return the factor on ``lr``."""
        scale = lr_scale(self.config, step)
        groups = self.optimizer.param_groups
        groups[0]["lr"] = self.config.lr * scale
        if len(groups) > 1:
            groups[1]["lr"] = self.config.lora_lr * scale
        return scale

    def _distinctness(self, step: int) -> dict[str, Any]:
        """:func:`~creaturekit.training.distinctness.distinctness` of the run's codes,
        the probe on ``probe_images`` training images."""
        mapper = self.accelerator.unwrap_model(self.mapper)

        def recognise() -> list[float | None]:
            cfg = self.config
            probes = load_probes(self.examples, self.base.vae, cfg.resolution, cfg.probe_images)
            self.objective.store.active = False
            with self.accelerator.autocast():
                return code_recognition(
                    self.conditioning,
                    self.base.unet,
                    self.base.scheduler,
                    mapper,
                    probes,
                    [p.subconcepts for p in self.result.parts],
                    self.project.config.project.category,
                    resolution=cfg.resolution,
                    batch_size=cfg.batch_size,
                )

        names = [p.name for p in self.run_vocab().parts]
        return distinctness(mapper, names, step, recognise if self.config.probe_images else None)

    def _write_outputs(self, step: int) -> None:
        from diffusers.utils import convert_state_dict_to_diffusers

        self._check_weights()
        meta = {
            "base_model": self.base.ref.ref,
            "step": str(step),
            "parts": json.dumps([p.name for p in self.run_vocab().parts]),
        }
        self.mapper.save(self.run.mapper, extra=meta)
        if self.config.rank > 0:
            write_lora(
                self.run.lora,
                convert_state_dict_to_diffusers(self._lora_state()),
                self.base.unet.peft_config["default"],
            )

    def run_vocab(self) -> RunVocab:
        """The part vocabulary the run is trained on (``vocab.json``)."""
        cfg = self.project.config
        return RunVocab(
            discovery_stamp=self.result.fitted_stamp,  # the centroids (kept by updates)
            images_hash=self.result.images_hash,
            category=cfg.project.category,
            parts=[
                VocabPart(
                    index=p.index,
                    is_background=p.is_background,
                    name=cfg.part_name(p.index, p.is_background),
                    subconcepts=p.subconcepts,
                    token=part_token(i),
                    token_id=self.token_ids[i],
                )
                for i, p in enumerate(self.result.parts)
            ],
        )

    def _samples(self, step: int) -> None:
        cfg = self.config
        picks = self.examples[:4]
        category = self.project.config.project.category
        template = self.project.config.mix.template  # samples are prompted as mix prompts
        prompts, codes = [], []
        for ex in picks:
            parts = sorted(ex.codes)
            prompts.append(fill_template(template, " ".join(map(part_token, parts)), category))
            codes.append([ex.codes[p] for p in parts])
        self.objective.store.active = False
        with self.accelerator.autocast():  # frozen weights may be half, the VAE is fp32
            images = generate(
                build_pipeline(self.base),
                self.conditioning,
                self.mapper,
                prompts,
                codes,
                list(range(len(picks))),
                size=cfg.resolution,
                steps=cfg.sample_steps,
                guidance=self.project.config.mix.guidance,
                negative=self.project.config.mix.negative,
            )
        with fsutil.atomic_path(self.run.samples / f"step-{step:06d}.png") as tmp:
            contact_sheet(images).save(tmp, format="PNG")

    # -- the loop -------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train to ``config.steps`` (continuing from the newest checkpoint with resume)."""
        try:
            with _terminate_as_interrupt():
                return self._fit()
        except OSError as err:
            if err.errno not in _ENVIRONMENT:
                raise
            again = (
                self.resume_command()
                if ckpt.list_checkpoints(self.run.checkpoints)
                else self.fit_command()
            )
            raise FitError(
                f"Could not write {err.filename or self.run.path} ({_os_problem(err)}). "
                f"{_os_fix(err)}, then `{again}`."
            ) from err

    def _fit(self) -> FitResult:
        started = time.monotonic()
        # inputs are checked before any model is loaded or latent cached
        if self.resume and not ckpt.list_checkpoints(self.run.checkpoints):
            raise FitError(f"No checkpoint to resume in {self.run.path}.")
        if not self.resume:
            self.run.check_new()
        self._setup()
        cfg = self.config
        main = self.accelerator.is_main_process  # only the main process writes the run
        step, cursor = 0, (0, 0)
        if self.resume:
            saved = self.run.resume_config({})
            if cfg.rank and separate_lora_lr(cfg) != separate_lora_lr(saved):
                raise FitError(
                    f"--lr {cfg.lr:g} would merge or split the mapper's and the LoRA's "
                    f"learning rates (lora_lr {cfg.lora_lr:g}), which a resumed run cannot; "
                    "choose another --lr."
                )
            found = self._read_resume_checkpoint()
            changes = self.run.check_config(cfg) if main else []
            step, cursor = self._load_checkpoint(found)
            if main:
                self.run.truncate_log(step)
                if changes:
                    _say(
                        f"Resuming run {self.run.path.name!r} with changed settings: "
                        + ", ".join(changes)
                        + "."
                    )
        elif main:
            self.run.start(
                cfg, self.run_vocab(), base_model=self.base.ref.ref, family=self.base.family
            )
        self.accelerator.wait_for_everyone()
        self._saved_at = time.monotonic()
        last: dict[str, float] = {}
        snapshot: tuple[Any, ...] | None = None
        progress = make_progress() if progress_enabled() and main else None
        several = self.accelerator.num_processes > 1
        with _stop_after_the_step() if several else contextlib.nullcontext() as asked:
            try:
                if progress is not None:
                    progress.start()
                    task = progress.add_task("Fitting", total=cfg.steps, completed=step, status="")
                while step < cfg.steps:
                    t0 = time.monotonic()
                    snapshot = self._rng_snapshot()
                    scale = self._set_learning_rates(step + 1)
                    last, new_cursor = self._optimisation_step(cursor)
                    step, cursor, snapshot = step + 1, new_cursor, None
                    if main and (step % cfg.log_every == 0 or step == cfg.steps):
                        row: dict[str, Any] = {
                            "step": step,
                            **last,
                            "lr": cfg.lr * scale,
                            "lora_lr": (cfg.lora_lr or cfg.lr) * scale,
                            "seconds": round(time.monotonic() - t0, 4),
                        }
                        if step == cfg.steps:
                            row.update(self._distinctness(step))
                        self.run.log(row)
                    if asked is not None and step < cfg.steps and self._stop_agreed(asked.is_set()):
                        raise KeyboardInterrupt  # every process stops after this same step
                    if self._checkpoint_due(step):
                        self._check_weights()
                        self._save_checkpoint(step, cursor)
                    if (
                        main
                        and cfg.sample_every
                        and (step % cfg.sample_every == 0 or step == cfg.steps)
                    ):
                        self._samples(step)
                    if progress is not None:
                        progress.update(task, completed=step, status=f"loss {last['loss']:.4f}")
            except KeyboardInterrupt:
                # Back to the state at the start of an unfinished step, so a resumed run
                # replays that step exactly as an uninterrupted run would.
                if snapshot is not None:
                    self._rng_restore(snapshot)
                saved_to = self._save_checkpoint(step, cursor) if step > 0 else None
                where = f"; checkpoint {saved_to.name} saved" if saved_to else ""
                then = (
                    f"Continue with `{self.resume_command()}`."
                    if saved_to
                    else f"Start again with `{self.fit_command()}`."
                )
                raise FitInterrupted(f"Interrupted at step {step}{where}. {then}") from None
            finally:
                if progress is not None:
                    progress.stop()
        if main:
            self._write_outputs(step)
        self.accelerator.wait_for_everyone()
        return FitResult(
            run_dir=self.run.path,
            step=step,
            loss=last.get("loss"),
            seconds=time.monotonic() - started,
        )

    def _stop_agreed(self, asked: bool) -> bool:
        """Whether any process was asked to stop: then all stop after this same step."""
        flag = torch.tensor([int(asked)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item())

    def _checkpoint_due(self, step: int) -> bool:
        """Every ``checkpoint_every`` steps, at the end, or ``checkpoint_minutes`` after the
        last checkpoint (the main process's clock decides for all processes)."""
        cfg = self.config
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            return True
        late = bool(cfg.checkpoint_minutes) and (
            time.monotonic() - self._saved_at >= 60 * cfg.checkpoint_minutes
        )
        acc = self.accelerator
        if acc.num_processes == 1:
            return late
        flag = torch.tensor([int(late and acc.is_main_process)], device=acc.device)
        return bool(acc.reduce(flag, reduction="sum").item())


@contextlib.contextmanager
def _stop_after_the_step() -> Iterator[threading.Event]:
    """Within the block, Ctrl-C or SIGTERM only asks for a stop (a second one aborts): with
    several processes a signal reaches each at another point of a step, so they agree at
    the step's end (:meth:`Trainer._stop_agreed`) and all checkpoint the same step."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def ask(signum: int, frame: Any) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def make_optimizer(name: str, groups: list[dict[str, Any]], **settings: float) -> Any:
    """The optimizer ``name`` (:data:`~creaturekit.training.fit_config.OPTIMIZERS`) over
    ``groups``; one whose library is missing says what to install."""
    import importlib

    module, cls = OPTIMIZERS[name]
    package = module.split(".")[0]
    try:
        optimizers = importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"fit optimizer {name!r} needs {package}: `pip install 'creaturekit[bnb]'` "
            "(or choose optimizer adamw)."
        ) from None
    return getattr(optimizers, cls)(groups, **settings)


def separate_lora_lr(config: FitConfig) -> bool:
    """Whether the LoRA has its own optimizer group (its own learning rate)."""
    return bool(config.lora_lr) and config.lora_lr != config.lr


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM (what schedulers and containers send before a kill) acts
    like Ctrl-C. Only in the main thread, where Python can take signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


#: OS refusals a user fixes (permissions, a full or read-only disk), not bugs.
_ENVIRONMENT = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _os_problem(err: OSError) -> str:
    return err.strerror or str(err)


def _os_fix(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "Free disk space"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "Make the project folder writable (or copy the project to a writable place)"
    return "Fix that"


def _say(message: str) -> None:
    """A note on stderr (not under ``quiet``)."""
    if progress_enabled():
        stderr_console.print(message, highlight=False, markup=False, soft_wrap=True)
