"""Export a run for other Stable Diffusion tools: the LoRA plus the whole part vocabulary.

Every (part, code) maps to ONE input-embedding vector, so the vocabulary becomes ordinary
textual-inversion embeddings, one token per pair, named by ``name_template`` (default
``{run}_{part}_{code}``: two runs' tokens never collide in one embeddings folder):

* ``diffusers``: ``pytorch_lora_weights.safetensors`` (``pipe.load_lora_weights``) and
  ``embeddings/<name>.safetensors`` = ``{"<name>": vector}``
  (``pipe.load_textual_inversion``).
* ``a1111``: ``<run>_lora.safetensors`` with kohya keys and ``ss_*`` / ``modelspec.*``
  metadata (A1111, ComfyUI, kohya, diffusers), ``<run>_bundle.safetensors`` = the same
  LoRA with every embedding bundled (one file for A1111), and
  ``embeddings/<name>.safetensors`` = ``{"emb_params": (1, dim)}`` (the file name is the
  token).

For an SDXL run every embedding file (both formats) is ``{"clip_l": (1, w1), "clip_g":
(1, w2)}``, each text encoder's part of the vector (the SDXL layout of A1111 and ComfyUI,
and what diffusers' SDXL documentation loads into ``text_encoder`` / ``text_encoder_2``),
and the a1111 LoRA has the original UNet's module names, as kohya's SDXL LoRAs (see
``kohya.py``).

Both hold ``creaturekit-run/`` (config.toml, vocab.json, mapper.safetensors), what
``import-run`` turns back into a run, and a README naming the tokens and how to load them.

An export folder is marked by ``.creaturekit-export.json`` (run, format, version, the
files it holds). Only a new or empty folder, a previous export or the run's own
``export-<format>`` folder is written without ``force``, never a project's own folders;
only the export's files are written or removed, each atomically, and the marker lists
every export file present at any moment (``"complete": true`` once all are written).
"""

from __future__ import annotations

import datetime
import re
import shutil
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from creaturekit import constants as C
from creaturekit import fsutil
from creaturekit.conditioning.mapper import TokenMapper
from creaturekit.errors import CreatureKitError
from creaturekit.generation.kohya import (
    bundle_embeddings,
    diffusers_to_kohya,
    encoder_embeddings,
    lora_metadata,
    sgm_blocks,
)
from creaturekit.generation.mix import latest_run
from creaturekit.generation.requests import Vocabulary
from creaturekit.project import Project
from creaturekit.training.run import CONFIG_FILE, MAPPER_FILE, VOCAB_FILE, RunFolder, run_folder
from creaturekit.version import __version__

FORMATS = ("diffusers", "a1111")
MARKER = ".creaturekit-export.json"
#: The run's own files in an export (what ``import-run`` reads).
RUN_DIR = "creaturekit-run"
RUN_FILES = (CONFIG_FILE, VOCAB_FILE, MAPPER_FILE)
DEFAULT_NAME_TEMPLATE = "{run}_{part}_{code}"
#: Every file an export may hold (a marker naming anything else is ignored).
_EXPORT_FILE = re.compile(
    r"README\.md|[\w.-]*(lora|_bundle)[\w.-]*\.safetensors|embeddings/\w[\w.-]*\.safetensors"
    rf"|{RUN_DIR}/({'|'.join(re.escape(f) for f in RUN_FILES)})"
)
#: A token name: typeable in A1111 (the file name is the trigger word) and ComfyUI
#: (``embedding:NAME``), a plain file name, and one word to the CLIP tokenizer's splitting.
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_FORMATTER = string.Formatter()


def vocabulary_vectors(
    mapper: TokenMapper, vocab: Vocabulary
) -> dict[tuple[str, int], torch.Tensor]:
    """``{(part name, code): vector}`` for every part and code of the run."""
    out: dict[tuple[str, int], torch.Tensor] = {}
    with torch.no_grad():
        for name, token in vocab.by_name.items():
            k = vocab.parts[token].subconcepts
            codes = torch.arange(k)
            vectors = mapper(torch.full_like(codes, token), codes)
            for code in range(k):
                out[name, code] = vectors[code].detach().clone().contiguous()
    return out


def token_names(
    vocab: Vocabulary, run: str, template: str = DEFAULT_NAME_TEMPLATE
) -> dict[tuple[str, int], str]:
    """``{(part name, code): token name}`` from ``template`` (fields ``{run}``, ``{part}``,
    ``{code}``); refused unless every name is typeable and unique (ignoring case: A1111
    and ComfyUI match names through the lower-casing CLIP tokenizer).

    In ``{run}``, characters other than letters, digits, ``_`` and ``-`` become ``_``.
    """
    try:
        fields = {f for _, f, _, _ in _FORMATTER.parse(template) if f is not None}
    except ValueError:
        fields = set()
    if not fields <= {"run", "part", "code"} or not {"part", "code"} <= fields:
        raise CreatureKitError(
            f"--name-template {template!r} must hold {{part}} and {{code}} and may hold "
            "{run}, no other fields (e.g. {run}_{part}_{code})."
        )
    safe_run = re.sub(r"[^A-Za-z0-9_-]", "_", run)
    names: dict[tuple[str, int], str] = {}
    seen: dict[str, str] = {}
    for part, token in vocab.by_name.items():
        for code in range(vocab.parts[token].subconcepts):
            try:
                name = template.format(run=safe_run, part=part, code=code)
            except ValueError as err:  # a format spec that does not fit, e.g. {part:03d}
                raise CreatureKitError(f"--name-template {template!r}: {err}.") from None
            if not _TOKEN_NAME.fullmatch(name):
                raise CreatureKitError(
                    f"--name-template {template!r} gives the token {name!r}, which UIs cannot "
                    "type: use letters, digits, '_' and '-' (starting with a letter or digit, "
                    "at most 100 characters)."
                )
            if name.lower() in seen:
                raise CreatureKitError(
                    f"--name-template {template!r} gives {seen[name.lower()]!r} and {name!r}, "
                    "one name to the UIs (they ignore case); keep {part} and {code} apart, "
                    "e.g. {run}_{part}_{code}."
                )
            seen[name.lower()] = name
            names[part, code] = name
    return names


def export_run(
    project: Project,
    fmt: str = "diffusers",
    run: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    name_template: str = DEFAULT_NAME_TEMPLATE,
    model: str | None = None,
) -> Path:
    """Write the export of ``run`` (default: latest) to ``out`` (default: in the run folder),
    under the project lock (a fit cannot change the run meanwhile).

    ``force`` writes into a non-empty folder that is not an export, beside its files
    (files with the export's names are replaced). ``name_template`` names the tokens
    (see :func:`token_names`). ``model`` (a hub id or folder of the run's base model) is
    read only for an SDXL run's a1111 LoRA, where the run's own base model is not at hand:
    its UNet config names the LoRA's modules.
    """
    with project.lock("export"):
        return _export_run(project, fmt, run, out, force, name_template, model)


def _export_run(
    project: Project,
    fmt: str,
    run: str | None,
    out: str | Path | None,
    force: bool,
    name_template: str,
    model: str | None,
) -> Path:
    if fmt not in FORMATS:
        raise CreatureKitError(f"Unknown export format {fmt!r}; choose {' or '.join(FORMATS)}.")
    folder = latest_run(project) if run is None else run_folder(project, run)
    if not folder.mapper.is_file():
        raise CreatureKitError(f"The run {folder.path.name!r} has no finished outputs to export.")
    default = folder.path / f"export-{fmt}"
    target = default if out is None else Path(out).expanduser()
    check_target(project, folder, target)
    previous = _previous_files(target, force or target.resolve() == default.resolve())
    files = _export_files(project, folder, fmt, name_template, model)
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
    project: Project, folder: RunFolder, fmt: str, template: str, model: str | None
) -> dict[str, Callable[[Path], None]]:
    """Each file of the export (path relative to the export folder) and what writes it."""
    vocab = Vocabulary(folder.vocab(), project.config)
    names = token_names(vocab, folder.path.name, template)
    mapper = TokenMapper.load(folder.mapper)
    info = folder.info()
    split = mapper.config.split
    vectors = {names[key]: v for key, v in vocabulary_vectors(mapper, vocab).items()}
    files: dict[str, Callable[[Path], None]] = {}
    for name, vector in vectors.items():
        if split:
            payload = encoder_embeddings(vector, split)
        else:
            payload = {f"<{name}>": vector} if fmt == "diffusers" else {"emb_params": vector[None]}
        files[f"embeddings/{name}.safetensors"] = _tensors(payload)
    for run_file in RUN_FILES:
        files[f"{RUN_DIR}/{run_file}"] = _copy(folder.path / run_file)
    has_lora = folder.lora.is_file()
    if fmt == "diffusers":
        if has_lora:
            files[folder.lora.name] = _copy(folder.lora)
    else:
        saved = folder.saved_config()
        fit = saved["fit"]
        kohya = {}
        if has_lora:
            blocks = None
            if info.family == "sdxl":
                blocks = sgm_blocks(base_unet_config(project, folder, info.base_model, model))
            lora = fsutil.load_safetensors(folder.lora)
            kohya = diffusers_to_kohya(lora, fit["lora_alpha"], blocks)
        steps = fsutil.safetensors_metadata(folder.mapper).get("step", fit["steps"])
        example = [names[n, 0] for n in vocab.by_name]

        def metadata(stem: str) -> dict[str, str]:
            return lora_metadata(
                output_name=stem,
                run=folder.path.name,
                fit=fit,
                base_model=str(saved["base_model"]),
                width=mapper.config.widths[0],
                family=info.family,
                steps=int(steps),
                created=datetime.datetime.fromtimestamp(folder.mapper.stat().st_mtime),
                trigger=example,
                description=f"{len(vectors)} part tokens of a creaturekit run: "
                + "; ".join(_token_ranges(vocab, names)),
            )

        stem = f"{folder.path.name}_lora"
        if has_lora:
            files[f"{stem}.safetensors"] = _tensors(kohya, metadata(stem))
        bundle = f"{folder.path.name}_bundle"
        files[f"{bundle}.safetensors"] = _tensors(
            kohya | bundle_embeddings(vectors, split), metadata(bundle)
        )
    readme = _readme(fmt, vocab, folder, names, has_lora, info.family)
    files["README.md"] = lambda path: fsutil.write_text(path, readme)
    return files


def base_unet_config(
    project: Project, run: RunFolder, base_model: str, model: str | None = None
) -> dict[str, Any]:
    """The UNet config (``unet/config.json``) of ``model`` (the user's) or else of the run's
    ``base_model`` (checked as any model a project file names, see ``project_model``)."""
    from diffusers import UNet2DConditionModel

    from creaturekit.models import load_pretrained, project_model, resolve_model, trust_model_path

    if model is None:
        model = project_model(base_model, project.root, f"base_model in {run.path / CONFIG_FILE}")
    else:
        trust_model_path(model)
    try:
        ref = resolve_model(model, base=project.root)
        config = load_pretrained(
            UNet2DConditionModel.load_config, ref, "base model's UNet", subfolder="unet"
        )
    except CreatureKitError as err:
        raise type(err)(
            f"An SDXL run's a1111 LoRA is named from its base model's UNet config, which "
            f"could not be read: {err}"
        ) from None
    return dict(config)


def _tensors(
    tensors: dict[str, Any], metadata: dict[str, str] | None = None
) -> Callable[[Path], None]:
    return lambda path: fsutil.save_safetensors(tensors, path, metadata)


def _copy(source: Path) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with fsutil.atomic_path(path) as tmp:
            shutil.copyfile(source, tmp)

    return write


def _token_ranges(
    vocab: Vocabulary, names: dict[tuple[str, int], str], token: Callable[[str], str] = str
) -> list[str]:
    """``head: r1_head_0 ... r1_head_255`` per part (each name written as ``token`` gives)."""
    return [
        f"{part}: {token(names[part, 0])} ... {token(names[part, vocab.parts[i].subconcepts - 1])}"
        for part, i in vocab.by_name.items()
    ]


def _readme(
    fmt: str,
    vocab: Vocabulary,
    folder: RunFolder,
    names: dict[tuple[str, int], str],
    has_lora: bool,
    family: str,
) -> str:
    run = folder.path.name
    sdxl = family == "sdxl"
    token = (lambda n: f"<{n}>") if fmt == "diffusers" else (lambda n: n)
    example = " ".join(token(names[n, 0]) for n in vocab.by_name)
    lora = (
        (f"`{folder.lora.name}`" if fmt == "diffusers" else f"`{run}_lora.safetensors`")
        if (has_lora)
        else "none: this run trained part tokens only (rank 0)"
    )
    base = folder.saved_config()["base_model"]
    lines = [
        f"# creaturekit export of run `{run}` ({fmt})",
        "",
        f"Base model: `{base}`" + (" (SDXL)" if sdxl else "") + f". LoRA: {lora}.",
        "",
        f"{len(names)} textual-inversion tokens, one per (part, code), in `embeddings/`"
        + (
            " (SDXL embeddings: each file holds `clip_l` and `clip_g`, the vectors of the "
            "two text encoders):"
            if sdxl
            else ":"
        ),
        "",
        *[f"* {line}" for line in _token_ranges(vocab, names, token)],
        "",
        f'Example prompt: "a photo of a {example} {vocab.category}"',
        "",
    ]
    pipeline = "StableDiffusionXLPipeline" if sdxl else "StableDiffusionPipeline"
    if fmt == "diffusers":
        lines += [
            f"**diffusers** (`pipe` a `{pipeline}` of the base model):",
            "",
            "```python",
            "from pathlib import Path",
            *(["from safetensors.torch import load_file"] if sdxl else []),
            "",
            *(["pipe.load_lora_weights('.')"] if has_lora else []),
            "files = sorted(Path('embeddings').glob('*.safetensors'))",
            *(
                _sdxl_embedding_lines("[f'<{f.stem}>' for f in files]")
                if sdxl
                else ["pipe.load_textual_inversion([str(f) for f in files])"]
            ),
            "```",
            "",
        ]
    else:
        lora_tag = f"<lora:{run}_lora:1>"
        lines += [
            *(
                [
                    "Use them with an SDXL checkpoint (the base model above or one built on it).",
                    "",
                ]
                if sdxl
                else []
            ),
            "**A1111 web UI, one file:** copy `{0}_bundle.safetensors` to `models/Lora/` and "
            "add `<lora:{0}_bundle:1>` to the prompt: it {1} every token above.".format(
                run, "applies the LoRA and makes typeable" if has_lora else "makes typeable"
            ),
            "",
            "**Per-file (A1111, ComfyUI):** copy `embeddings/*.safetensors` to the UI's "
            "embeddings folder (ComfyUI: `models/embeddings/`, written `embedding:NAME` in "
            "prompts)"
            + (
                f" and `{run}_lora.safetensors` to `models/Lora/` (ComfyUI: `models/loras/`, "
                f"a LoraLoader node; A1111: `{lora_tag}` in the prompt)."
                if has_lora
                else "."
            )
            + " ComfyUI does not read bundled embeddings (it logs `lora key not loaded: "
            "bundle_emb...`): use the per-file way there.",
            "",
            "**diffusers:** the `diffusers` export (`creaturekit export --format diffusers`) "
            "is the one made for it. These files load too, but "
            + (
                "each embedding file holds one vector per text encoder, so load each into "
                "its encoder with the token (the file name):"
                if sdxl
                else "each embedding file holds `emb_params`, so give the tokens, or all of "
                "them collapse into one token `emb_params`:"
            ),
            "",
            "```python",
            "from pathlib import Path",
            *(["from safetensors.torch import load_file"] if sdxl else []),
            "",
            *(
                [f"pipe.load_lora_weights('.', weight_name='{run}_lora.safetensors')"]
                if has_lora
                else []
            ),
            "files = sorted(Path('embeddings').glob('*.safetensors'))",
            *(
                _sdxl_embedding_lines("[f.stem for f in files]")
                if sdxl
                else [
                    "pipe.load_textual_inversion([str(f) for f in files], "
                    "token=[f.stem for f in files])"
                ]
            ),
            "```",
            "",
        ]
    lines += [
        f"`{RUN_DIR}/` holds the run itself: `creaturekit import-run DIR` in a project with "
        "the same discovery result makes it a run again, for `mix` and `eval`.",
        "",
    ]
    return "\n".join(lines)


def _sdxl_embedding_lines(tokens: str) -> list[str]:
    """The README's Python lines loading SDXL embedding ``files`` into both text encoders
    of ``pipe`` as the tokens ``tokens`` (an expression)."""
    return [
        f"tokens = {tokens}",
        "vectors = [load_file(f) for f in files]",
        "pipe.load_textual_inversion([v['clip_l'] for v in vectors], token=tokens,",
        "                            text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)",
        "pipe.load_textual_inversion([v['clip_g'] for v in vectors], token=tokens,",
        "                            text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)",
    ]
