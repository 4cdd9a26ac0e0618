"""Stage 3 on a project: load a fitted run once, then compose creatures by part name."""

from __future__ import annotations

import itertools
import logging
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from creaturekit import fsutil
from creaturekit.conditioning.pipeline import build_pipeline, contact_sheet, generate, is_blank
from creaturekit.config import Config
from creaturekit.errors import CreatureKitError, StageMissingError
from creaturekit.generation.requests import (
    PartRequest,
    PartRequestError,
    Vocabulary,
    check_generation,
    compose_prompt,
    parse_prompt,
)
from creaturekit.progress import track
from creaturekit.project import Project
from creaturekit.training.run import CONFIG_FILE, RunFolder, RunVocab, list_runs, run_folder
from creaturekit.version import __version__


@dataclass
class Mix:
    """Generated images with what produced them; ``folder`` is set once written."""

    images: list[Image.Image]
    records: list[dict[str, Any]]
    folder: Path | None = None
    blank: list[int] = field(default_factory=list)  # indices of black / constant images

    def extend(self, other: Mix) -> None:
        """Append ``other``'s images and records (its blank indices shifted)."""
        self.blank.extend(len(self.images) + i for i in other.blank)
        self.images.extend(other.images)
        self.records.extend(other.records)


def latest_run(project: Project) -> RunFolder:
    """The most recently finished run of the project."""
    done = [r.mapper for r in list_runs(project) if r.mapper.is_file()]
    done.sort(key=lambda p: p.stat().st_mtime)
    if not done:
        raise StageMissingError("This project has no fitted run yet; run `creaturekit fit`.")
    return RunFolder(done[-1].parent)


class FittedRun:
    """A fitted run's folder and part vocabulary, checked against the project's discovery.

    Cheap (no model is loaded), so requests are checked before any heavy work.
    """

    def __init__(self, project: Project, run: str | None = None) -> None:
        """Open ``run`` (default: the latest finished one) of ``project``."""
        self.project = project
        self.folder = latest_run(project) if run is None else run_folder(project, run)
        if not self.folder.mapper.is_file():
            raise StageMissingError(
                f"The run {self.folder.path.name!r} has not finished fitting (no mapper); "
                "finish it with `creaturekit fit --resume`."
            )
        self.vocab = self.folder.vocab()
        self._check_discovery()
        self.vocabulary = Vocabulary(self.vocab, project.config)

    def _check_discovery(self) -> None:
        from creaturekit.discovery.result import RESULT_FILE, read_result

        path = self.project.discovery_dir / RESULT_FILE
        if not path.is_file():
            return
        data = fsutil.read_json(path)
        stamps = (data.get("stamp"), data.get("fitted_stamp")) if isinstance(data, dict) else ()
        if isinstance(data, dict) and self.vocab.discovery_stamp not in stamps:  # centroids
            raise StageMissingError(
                f"The run {self.folder.path.name!r} was trained on another discovery result "
                "than the project's current one; fit a new run or mix with an older copy."
            )
        read_result(self.project.discovery_dir)  # every file whole, e.g. all centroids

    def image_codes(self, image_id: int) -> dict[str, int]:
        """The codes discovery gave training image ``image_id``, by part name."""
        from creaturekit.discovery.result import read_result

        names = self.vocabulary.by_index
        for row in read_result(self.project.discovery_dir).codes:
            if row["id"] == image_id:
                return {names[int(m)]: int(k) for m, k in row["codes"].items()}
        raise CreatureKitError(f"No discovered image has id {image_id} (see `creaturekit info`).")

    def requests(
        self, parts: dict[str, list[int]] | None = None, prompt: str | None = None
    ) -> tuple[str, list[PartRequest]]:
        """The prompt with part tokens and the requests, from named codes or a prompt;
        unknown part names and out-of-range codes are refused."""
        if prompt is not None:
            text, requests = parse_prompt(prompt, self.vocabulary)
            extra = [
                self.vocabulary.request(n, c) for n, codes in (parts or {}).items() for c in codes
            ]
            if extra:
                text = f"{compose_prompt(extra, '{parts}', '')} {text}".strip()
                requests = extra + requests
            return text, requests
        requests = [
            self.vocabulary.request(n, c) for n, codes in (parts or {}).items() for c in codes
        ]
        template = self.project.config.mix.template
        return compose_prompt(requests, template, self.vocabulary.category), requests


class Mixer:
    """A fitted run loaded for generation: base model + part tokens + mapper + LoRA."""

    def __init__(
        self,
        project: Project,
        run: str | FittedRun | None = None,
        scheduler: str = "ddim",
        device: str = "auto",
        model: str | None = None,
    ) -> None:
        """Load ``run`` (a name, an opened :class:`FittedRun`, default: the latest) on its
        base model, or on ``model`` if given (the user's own hub id or path, e.g. where
        the run's base model lives here)."""
        from creaturekit.conditioning.base_model import FAMILY_NAMES, load_base_model
        from creaturekit.conditioning.mapper import TokenMapper
        from creaturekit.conditioning.text import TextConditioning
        from creaturekit.models import project_model, select_device, trust_model_path

        self.project = project
        self.fitted = run if isinstance(run, FittedRun) else FittedRun(project, run)
        self.run, self.vocabulary = self.fitted.folder, self.fitted.vocabulary
        vocab = self.fitted.vocab
        info = self.run.info()
        self.resolution = info.fit.resolution  # the default image size
        if model is None:
            model = info.base_model
            project_model(model, project.root, f"base_model in {self.run.path / CONFIG_FILE}")
        else:
            trust_model_path(model)
        base = load_base_model(model, project.root)
        if base.family != info.family:
            raise CreatureKitError(
                f"The run {self.run.path.name!r} was fitted on an {FAMILY_NAMES[info.family]} "
                f"base model, and {base.ref.ref!r} is an {FAMILY_NAMES[base.family]} one; "
                "pass a base model of the run's family with --model."
            )
        self.conditioning = TextConditioning.of(base)
        ids = self.conditioning.add_part_tokens(len(vocab.parts))
        if ids != [p.token_id for p in vocab.parts]:
            raise CreatureKitError("The base model's tokenizer differs from the run's.")
        self.token_ids = ids
        self.mapper = TokenMapper.load(self.run.mapper)
        self._check_mapper(vocab, self.conditioning.widths)
        self.pipe = build_pipeline(base, scheduler)
        if self.run.lora.is_file():
            self._load_lora()
        self.pipe.to(select_device(device))
        self.mapper.to(self.pipe.device)
        self.base_model = base.ref.ref

    def use_names(self, config: Config) -> None:
        """Address parts by ``config``'s names (a part renamed while this mixer is loaded)."""
        self.project.config = self.fitted.project.config = config
        self.fitted.vocabulary = Vocabulary(self.fitted.vocab, config)
        self.vocabulary = self.fitted.vocabulary

    def _check_mapper(self, vocab: RunVocab, widths: tuple[int, ...]) -> None:
        """The mapper must fit the run's vocabulary and the base model's text encoders."""
        config = self.mapper.config
        codes = tuple(p.subconcepts for p in vocab.parts)
        if config.num_codes != codes or config.widths != widths:
            raise fsutil.damaged(
                self.run.mapper,
                f"it maps sub-concepts {list(config.num_codes)} to widths "
                f"{list(config.widths)}, where the run has sub-concepts {list(codes)} and its "
                f"base model's text encoders have widths {list(widths)}",
            )

    def _load_lora(self) -> None:
        """The run's LoRA into the pipeline; a damaged or mismatched file is named."""
        fsutil.safetensors_metadata(self.run.lora)  # a truncated or garbled file fails here
        lora_log = logging.getLogger("diffusers.loaders.lora_base")
        level = lora_log.level
        lora_log.setLevel(logging.ERROR)  # not "No LoRA keys ... CLIPTextModel": UNet-only
        peft_log = logging.getLogger("diffusers.loaders.peft")
        peft_log.addFilter(_below_error)  # its error log repeats the one raised here, at length
        try:
            self.pipe.load_lora_weights(self.run.path)
        except (ValueError, RuntimeError, KeyError) as err:
            mismatch = re.search(r"size mismatch for ([\w.]+)", str(err))
            detail = f"{mismatch[1]} has another shape" if mismatch else str(err)[:200]
            reason = f"its tensors do not fit the run's base model: {detail}"
            raise fsutil.damaged(self.run.lora, reason) from None
        finally:
            lora_log.setLevel(level)
            peft_log.removeFilter(_below_error)

    def image_codes(self, image_id: int) -> dict[str, int]:
        """The codes discovery gave training image ``image_id``, by part name."""
        return self.fitted.image_codes(image_id)

    def requests(
        self, parts: dict[str, list[int]] | None = None, prompt: str | None = None
    ) -> tuple[str, list[PartRequest]]:
        """The prompt with part tokens and the requests (see :meth:`FittedRun.requests`)."""
        return self.fitted.requests(parts, prompt)

    def __call__(
        self,
        parts: dict[str, list[int]] | None = None,
        prompt: str | None = None,
        *,
        n: int = 1,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        negative: str | None = None,
        size: int | None = None,
        on_step: Callable[[], None] | None = None,
    ) -> Mix:
        """Generate ``n`` images (seeds ``seed`` .. ``seed + n - 1``); nothing is written.

        ``on_step`` is called after every denoising step of every image (see ``generate``).
        """
        settings = self.project.config.mix
        check_generation(seed=seed, n=n, steps=steps, guidance=guidance, size=size)
        text, requests = self.requests(parts, prompt)
        size = size or self.resolution
        steps = steps or settings.steps
        limit = int(self.pipe.scheduler.config.num_train_timesteps)
        if steps >= limit:  # the sampler would index past its noise schedule
            raise PartRequestError(
                f"--steps must be below {limit}, the number of noise levels of this run's "
                f"base model; got {steps}."
            )
        guidance = settings.guidance if guidance is None else guidance
        negative = settings.negative if negative is None else negative
        seeds = list(range(seed, seed + n))
        codes = [r.code for r in requests]
        images = generate(
            self.pipe,
            self.conditioning,
            self.mapper,
            [text] * n,
            [codes] * n,
            seeds,
            size=size,
            steps=steps,
            guidance=guidance,
            negative=negative,
            on_step=on_step,
        )
        records = [
            {
                "codes": [{"part": r.name, "code": r.code} for r in requests],
                "prompt": text,
                "seed": s,
                "run": self.run.path.name,
                "model": self.base_model,
                "steps": steps,
                "guidance": guidance,
                "negative": negative,
                "size": size,
                "creaturekit_version": __version__,
            }
            for s in seeds
        ]
        return Mix(
            images=images, records=records, blank=[i for i, im in enumerate(images) if is_blank(im)]
        )


def _below_error(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR


def write_mix(project: Project, mix: Mix) -> Path:
    """Write PNGs, JSON sidecars and a contact sheet to ``mixes/<timestamp>/``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = project.mixes_dir / stamp
    suffix = 1
    while folder.exists():
        folder = project.mixes_dir / f"{stamp}-{suffix}"
        suffix += 1
    staging = project.mixes_dir / f".tmp-{folder.name}"
    try:
        staging.mkdir(parents=True)
        for i, (image, record) in enumerate(zip(mix.images, mix.records, strict=True)):
            image.save(staging / f"mix-{i:03d}.png")
            fsutil.write_json(staging / f"mix-{i:03d}.json", {**record, "blank": i in mix.blank})
        contact_sheet(mix.images).save(staging / "contact-sheet.png")
        staging.rename(folder)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise CreatureKitError(
            f"Could not write the mixes to {project.mixes_dir} ({err.strerror or err}); "
            "check that the folder is writable and has space, or use write=False."
        ) from err
    mix.folder = folder
    return folder


def sweep(parts: dict[str, list[list[int]]]) -> list[dict[str, list[int]]]:
    """Every combination of alternatives: ``{"wing": [[10, 20]]}`` -> two requests.

    Each occurrence of a part lists its alternatives; several occurrences of one part
    blend (``--head 1 --head 2``), several alternatives sweep (``--wing 10,20``).
    """
    slots = [(name, alts) for name, occurrences in parts.items() for alts in occurrences]
    combos = []
    for choice in itertools.product(*(alts for _, alts in slots)):
        combo: dict[str, list[int]] = {}
        for (name, _), code in zip(slots, choice, strict=True):
            combo.setdefault(name, []).append(code)
        combos.append(combo)
    return combos


def mix(
    project: Project,
    parts: dict[str, list[list[int]]] | None = None,
    prompt: str | None = None,
    *,
    combinations: Sequence[dict[str, list[int]]] | None = None,
    run: str | None = None,
    scheduler: str = "ddim",
    like: int | None = None,
    fill: bool = False,
    write: bool = True,
    model: str | None = None,
    mixer: Mixer | None = None,
    **options: Any,
) -> Mix:
    """Compose creatures with a fitted run; write them to ``mixes/`` unless ``write`` is off.

    ``parts`` maps part names to occurrences, each a list of alternative codes (see
    :func:`sweep`); every combination gets ``n`` images with the same seeds. ``like``
    starts from all codes of a training image (given parts override them); ``fill``
    gives every part not requested a random code (seeded by ``seed``). Or
    ``combinations`` lists the requests themselves (``{name: codes}`` each), combination
    ``j`` seeded from ``seed + j * n``: different creatures, not a comparison. ``model``
    loads the run on another base model than the one it records (see :class:`Mixer`).
    Every request is checked before any model is loaded. A ``mixer`` already loaded (by
    a long-lived process such as the studio) is used instead of loading ``run``;
    ``on_step`` in ``options`` is called after every denoising step.
    """
    check_generation(**{k: v for k, v in options.items() if k not in ("negative", "on_step")})
    fitted = FittedRun(project, run) if mixer is None else mixer.fitted
    if combinations is not None:
        if parts or like is not None or fill:
            raise CreatureKitError("Give either combinations or parts (with like, fill).")
        combos, step = [dict(c) for c in combinations], int(options.get("n", 1))
    else:
        parts = dict(parts or {})
        if like is not None:
            like_codes = fitted.image_codes(like)
            parts = {**{name: [[code]] for name, code in like_codes.items()}, **parts}
        if fill:
            rng = random.Random(options.get("seed", 0))
            for name, token in fitted.vocabulary.by_name.items():
                k = fitted.vocabulary.parts[token].subconcepts
                parts.setdefault(name, [[rng.randrange(k)]])
        combos, step = sweep(parts), 0
    for combo in combos:  # unknown parts and codes are refused before any model loads
        fitted.requests(combo, prompt)
    if mixer is None:
        mixer = Mixer(project, fitted, scheduler, model=model)
    result = Mix(images=[], records=[])
    seed = int(options.pop("seed", 0))
    for j, combo in enumerate(track(combos, "Mixing creatures", total=len(combos))):
        result.extend(mixer(combo, prompt, seed=seed + j * step, **options))
    if write:
        with project.lock("mix"):
            write_mix(project, result)
    return result
