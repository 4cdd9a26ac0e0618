"""Export a run for other Stable Diffusion tools: the LoRA plus the whole part vocabulary.

Every (part, code) maps to ONE input-embedding vector, so the vocabulary becomes ordinary
textual-inversion embeddings, one token per pair:

* ``diffusers``: ``pytorch_lora_weights.safetensors`` (``pipe.load_lora_weights``) and
  ``embeddings/<name>_<code>.safetensors`` = ``{"<name_code>": vector}``
  (``pipe.load_textual_inversion``).
* ``a1111``: ``<run>_lora.safetensors`` with kohya keys (``lora_unet_..._to_q.lora_down``,
  ``.lora_up``, ``.alpha``) for A1111/ComfyUI/diffusers, and
  ``embeddings/<name>_<code>.safetensors`` = ``{"emb_params": (1, dim)}`` (the file name
  is the token).

A README in the export names the tokens and gives an example prompt.

An export folder is marked by ``.creaturekit-export.json`` (run, format, version, the
files it holds). Only a new or empty folder, a previous export or the run's own
``export-<format>`` folder is written without ``force``, never a project's own folders;
only the export's files are written or removed, each atomically, and the marker lists
every export file present at any moment (``"complete": true`` once all are written).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from creaturekit import constants as C
from creaturekit import fsutil
from creaturekit.conditioning.mapper import TokenMapper
from creaturekit.errors import CreatureKitError
from creaturekit.generation.mix import latest_run
from creaturekit.generation.requests import Vocabulary
from creaturekit.project import Project
from creaturekit.training.run import RunFolder, run_folder
from creaturekit.version import __version__

FORMATS = ("diffusers", "a1111")
MARKER = ".creaturekit-export.json"
#: Every file an export may hold (a marker naming anything else is ignored).
_EXPORT_FILE = re.compile(
    r"README\.md|[\w.-]*lora[\w.-]*\.safetensors|embeddings/\w[\w.-]*\.safetensors"
)


def vocabulary_vectors(mapper: TokenMapper, vocab: Vocabulary) -> dict[str, torch.Tensor]:
    """``{"<name>_<code>": vector}`` for every part and code of the run."""
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, token in vocab.by_name.items():
            k = int(vocab.parts[token]["subconcepts"])
            codes = torch.arange(k)
            vectors = mapper(torch.full_like(codes, token), codes)
            for code in range(k):
                out[f"{name}_{code}"] = vectors[code].detach().clone().contiguous()
    return out


def diffusers_to_kohya(state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """diffusers-format UNet LoRA keys -> kohya keys (with one ``alpha`` per module)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith("unet.") or ".lora." not in key:
            raise CreatureKitError(f"Unexpected LoRA key {key!r}; re-run fit with this version.")
        module, kind = key[len("unet.") :].split(".lora.", 1)
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.lora_{kind}"] = value.contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out


def export_run(
    project: Project,
    fmt: str = "diffusers",
    run: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Write the export of ``run`` (default: latest) to ``out`` (default: in the run folder).

    ``force`` writes into a non-empty folder that is not an export, beside its files
    (files with the export's names are replaced).
    """
    if fmt not in FORMATS:
        raise CreatureKitError(f"Unknown export format {fmt!r}; choose {' or '.join(FORMATS)}.")
    folder = latest_run(project) if run is None else run_folder(project, run)
    if not folder.mapper.is_file():
        raise CreatureKitError(f"The run {folder.path.name!r} has no finished outputs to export.")
    default = folder.path / f"export-{fmt}"
    target = default if out is None else Path(out).expanduser()
    check_target(project, folder, target)
    previous = _previous_files(target, force or target.resolve() == default.resolve())
    files = _export_files(project, folder, fmt)
    marker = {"creaturekit_version": __version__, "run": folder.path.name, "format": fmt}
    fsutil.write_json(
        target / MARKER, {**marker, "complete": False, "files": sorted(previous | set(files))}
    )
    for name, write in files.items():
        write(target / name)
    for name in sorted(previous - set(files)):
        (target / name).unlink(missing_ok=True)
    fsutil.write_json(target / MARKER, {**marker, "complete": True, "files": sorted(files)})
    return target


def check_target(project: Project, run: RunFolder, target: Path) -> None:
    """Refuse an export folder that is a project or inside one's own folders.

    Allowed inside a project: folders beside its stage folders, and the run's own
    ``runs/<run>/export...`` folders.
    """
    if target.exists() and not target.is_dir():
        raise CreatureKitError(f"{target} is a file; give --out a folder for the export.")
    resolved = target.resolve()
    for root in (resolved, *resolved.parents):
        if not (root / C.CONFIG_NAME).is_file():
            continue
        where = resolved.relative_to(root).parts
        if not where:
            problem = f"the project folder {root}"
        elif where[0] in (C.IMAGES_DIR, *C.STAGE_DIRS) and not (
            root == project.root.resolve() and _in_run_export(where, run)
        ):
            problem = f"inside {where[0]}/ of the project {root}"
        else:
            continue
        raise CreatureKitError(
            f"--out {target} is {problem}, which creaturekit manages; export to a new folder "
            f"outside it, or leave out --out (runs/{run.path.name}/export-FORMAT)."
        )


def _in_run_export(where: tuple[str, ...], run: RunFolder) -> bool:
    """Whether ``where`` (a path in the project) is in the run's own ``export...`` folder."""
    return len(where) > 2 and where[:2] == (C.RUNS_DIR, run.path.name) and where[2][:6] == "export"


def _previous_files(target: Path, force: bool) -> set[str]:
    """The files of a previous export in ``target``; refuse a foreign folder unless ``force``."""
    if not target.is_dir():
        return set()
    try:
        marker = fsutil.read_json(target / MARKER)
        return {f for f in marker["files"] if _EXPORT_FILE.fullmatch(f)}
    except (OSError, CreatureKitError, KeyError, TypeError):
        pass  # no marker (or not one an export wrote): not a previous export
    found = sorted(p.name for p in target.iterdir())
    if found and not force:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise CreatureKitError(
            f"{target} holds files that are not a creaturekit export ({shown}); export to a "
            "new or empty folder, or add --force to write the export beside them (files "
            "with the export's names are replaced, nothing else is touched)."
        )
    return set()


def _export_files(
    project: Project, folder: RunFolder, fmt: str
) -> dict[str, Callable[[Path], None]]:
    """Each file of the export (path relative to the export folder) and what writes it."""
    vocab = Vocabulary(folder.vocab(), project.config)
    vectors = vocabulary_vectors(TokenMapper.load(folder.mapper), vocab)
    files: dict[str, Callable[[Path], None]] = {}
    for name, vector in vectors.items():
        payload = {f"<{name}>": vector} if fmt == "diffusers" else {"emb_params": vector[None]}
        files[f"embeddings/{name}.safetensors"] = _tensors(payload)
    lora_name = None
    if folder.lora.is_file():
        if fmt == "diffusers":
            lora_name = folder.lora.name
            files[lora_name] = _copy(folder.lora)
        else:
            lora_name = f"{folder.path.name}_lora.safetensors"
            alpha = float(folder.saved_config()["fit"]["lora_alpha"])
            kohya = diffusers_to_kohya(fsutil.load_safetensors(folder.lora), alpha)
            files[lora_name] = _tensors(kohya)
    readme = _readme(fmt, vocab, folder, lora_name, vectors)
    files["README.md"] = lambda path: fsutil.write_text(path, readme)
    return files


def _tensors(tensors: dict[str, Any]) -> Callable[[Path], None]:
    return lambda path: fsutil.save_safetensors(tensors, path)


def _copy(source: Path) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with fsutil.atomic_path(path) as tmp:
            shutil.copyfile(source, tmp)

    return write


def _readme(
    fmt: str,
    vocab: Vocabulary,
    folder: RunFolder,
    lora: str | None,
    vectors: dict[str, torch.Tensor],
) -> str:
    token = (lambda n: f"<{n}>") if fmt == "diffusers" else (lambda n: n)
    names = list(vocab.by_name)
    example = " ".join(token(f"{n}_0") for n in names)
    lines = [
        f"# creaturekit export of run `{folder.path.name}` ({fmt})",
        "",
        f"Base model: `{folder.saved_config()['base_model']}`. LoRA: "
        f"`{lora or 'none (textual inversion only)'}`.",
        "",
        f"{len(vectors)} textual-inversion tokens, one per (part, code), in `embeddings/`:",
        "",
    ]
    lines += [
        f"* `{n}`: {token(f'{n}_0')} ... {token(f'{n}_' + str(vocab.parts[i]['subconcepts'] - 1))}"
        for n, i in vocab.by_name.items()
    ]
    lines += ["", f'Example prompt: "a photo of a {example} {vocab.category}"', ""]
    if fmt == "diffusers":
        lines += [
            "```python",
            "from pathlib import Path",
            "",
            "pipe.load_lora_weights('.')" if lora else "",
            "files = sorted(Path('embeddings').glob('*.safetensors'))",
            "pipe.load_textual_inversion([str(f) for f in files])",
            "```",
            "",
        ]
    else:
        lines += [
            "Copy `embeddings/*.safetensors` to the web UI's `embeddings/` folder and the "
            "LoRA to `models/Lora/`; add `<lora:"
            + (lora or "").removesuffix(".safetensors")
            + ":1>` to the prompt.",
            "",
        ]
    return "\n".join(lines)
