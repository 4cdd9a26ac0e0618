"""``import-run``: an export (either format) back into a run of a project, for ``mix`` and ``eval``.

An export holds ``creaturekit-run/`` (config.toml, vocab.json, mapper.safetensors) and
the LoRA: the diffusers file as it is, or the a1111 file's kohya keys converted back
(an SDXL run's have the original UNet's names: their diffusers names come from the base
model's UNet config, read from the run's base model or ``model``).
The run lands in ``runs/<name>/`` whole or not at all (filled beside it, then renamed).
Only an export of a run trained on the project's own discovery result is accepted:
part tokens mean nothing against another discovery's parts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from creaturekit import fsutil
from creaturekit.conditioning.mapper import TokenMapper
from creaturekit.discovery.result import RESULT_FILE
from creaturekit.errors import CreatureKitError, StageMissingError
from creaturekit.generation.export import MARKER, RUN_DIR, RUN_FILES, base_unet_config
from creaturekit.generation.kohya import kohya_to_diffusers, sgm_blocks
from creaturekit.paths import check_name
from creaturekit.project import Project
from creaturekit.training.objective import lora_config, lora_targets
from creaturekit.training.run import (
    LOG_FILE,
    LORA_FILE,
    RunFolder,
    run_folder,
    write_lora,
)


def import_run(
    project: Project,
    source: str | os.PathLike[str],
    run: str | None = None,
    model: str | None = None,
) -> Path:
    """Make the export in ``source`` the run ``run`` (default: the exported run's name).

    ``model`` (a hub id or folder of the run's base model) is read only for an SDXL run's
    a1111 export, where the run's own ``base_model`` is not at hand here.
    """
    source = Path(source).expanduser()
    marker = _read_marker(source)
    folder = run_folder(project, run or str(marker.get("run", "")))
    exported = RunFolder(source / RUN_DIR)
    missing = [f for f in RUN_FILES if not (exported.path / f).is_file()]
    if missing:
        raise CreatureKitError(
            f"{source} has no {RUN_DIR}/{missing[0]}: it was exported by an older creaturekit; "
            "export the run again with this version to import it."
        )
    fit = exported.saved_fit()
    vocab = exported.vocab()  # a damaged vocabulary is named
    _check_discovery(project, source, vocab.discovery_stamp)
    TokenMapper.load(exported.mapper)  # a damaged mapper is named now, not at mix time
    lora = _lora_file(source, marker, int(fit["rank"]))
    blocks = None
    info = exported.info()
    if lora is not None and marker["format"] == "a1111" and info.family == "sdxl":
        blocks = sgm_blocks(base_unet_config(project, exported, info.base_model, model))
    project.runs_dir.mkdir(parents=True, exist_ok=True)
    with project.lock("import-run"):
        if folder.path.exists():
            raise CreatureKitError(
                f"The run {folder.path.name!r} exists already; import under another name with "
                "--run NAME."
            )
        staging = fsutil.staging_folder(project.runs_dir, f".import-{folder.path.name}.")
        try:
            for name in RUN_FILES:
                shutil.copyfile(exported.path / name, staging / name)
            fsutil.write_text(staging / LOG_FILE, "")
            if lora is not None and marker["format"] == "diffusers":
                shutil.copyfile(lora, staging / LORA_FILE)
            elif lora is not None:
                try:
                    layers = kohya_to_diffusers(fsutil.load_safetensors(lora), blocks)
                except CreatureKitError as err:
                    raise CreatureKitError(f"{lora}: {err}") from None
                adapter = lora_config(
                    fit["rank"], fit["lora_alpha"], lora_targets(fit["lora_layers"])
                )
                write_lora(
                    staging / LORA_FILE,
                    {k.removeprefix("unet."): v for k, v in layers.items()},
                    adapter,
                )
            os.replace(staging, folder.path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder.path


def _read_marker(source: Path) -> dict[str, object]:
    if not source.is_dir():
        raise CreatureKitError(f"{source} is not a folder; give the folder of an export.")
    try:
        marker = fsutil.read_json(source / MARKER)
    except FileNotFoundError:
        marker = None
    if not isinstance(marker, dict) or marker.get("format") not in ("diffusers", "a1111"):
        raise CreatureKitError(
            f"{source} is not a creaturekit export (no valid {MARKER}); give the folder "
            "`creaturekit export` wrote."
        )
    check_name(str(marker.get("run", "")), f"The run name in {source / MARKER}")
    if marker.get("complete") is not True:
        raise CreatureKitError(
            f"{source} holds an unfinished export (it was interrupted); export it again."
        )
    return marker


def _check_discovery(project: Project, source: Path, stamp: object) -> None:
    path = project.discovery_dir / RESULT_FILE
    if not path.is_file():
        raise StageMissingError(
            "This project has no discovery result; a run is imported into the project (or a "
            "copy of it) whose discovery it was trained on."
        )
    current = fsutil.read_json(path)
    ours = current.get("stamp") if isinstance(current, dict) else None
    if ours != stamp:
        raise CreatureKitError(
            f"The run in {source} was trained on another discovery result ({stamp}) than "
            f"this project's ({ours}); its part tokens fit only that one. Import it into a "
            "copy of the project it was trained in."
        )


def _lora_file(source: Path, marker: dict[str, object], rank: int) -> Path | None:
    """The export's LoRA file (None for a run without one); refused where it is missing."""
    if rank == 0:
        return None
    name = LORA_FILE if marker["format"] == "diffusers" else f"{marker['run']}_lora.safetensors"
    if not (source / name).is_file():
        raise CreatureKitError(f"{source} has no {name}, the run's LoRA; export it again.")
    return source / name
