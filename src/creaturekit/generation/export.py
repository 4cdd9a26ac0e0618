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
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from creaturekit import fsutil
from creaturekit.errors import CreatureKitError
from creaturekit.generation.requests import Vocabulary
from creaturekit.generation.stage import latest_run
from creaturekit.project import Project
from creaturekit.training.mapper import TokenMapper
from creaturekit.training.run import RunFolder

FORMATS = ("diffusers", "a1111")


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
    project: Project, fmt: str = "diffusers", run: str | None = None, out: str | Path | None = None
) -> Path:
    """Write the export of ``run`` (default: latest) to ``out`` (default: in the run folder)."""
    if fmt not in FORMATS:
        raise CreatureKitError(f"Unknown export format {fmt!r}; choose {' or '.join(FORMATS)}.")
    folder = latest_run(project) if run is None else RunFolder(project.runs_dir / run)
    if not folder.mapper.is_file():
        raise CreatureKitError(f"The run {folder.path.name!r} has no finished outputs to export.")
    vocab = Vocabulary(folder.vocab(), project.config)
    vectors = vocabulary_vectors(TokenMapper.load(folder.mapper), vocab)
    target = Path(out) if out is not None else folder.path / f"export-{fmt}"
    staging = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "embeddings").mkdir(parents=True)
    for name, vector in vectors.items():
        payload = {f"<{name}>": vector} if fmt == "diffusers" else {"emb_params": vector[None]}
        save_file(payload, str(staging / "embeddings" / f"{name}.safetensors"))
    lora_name = None
    if folder.lora.is_file():
        if fmt == "diffusers":
            lora_name = folder.lora.name
            shutil.copyfile(folder.lora, staging / lora_name)
        else:
            lora_name = f"{folder.path.name}_lora.safetensors"
            alpha = float(folder.saved_config()["fit"]["lora_alpha"])
            save_file(
                diffusers_to_kohya(load_file(str(folder.lora)), alpha), str(staging / lora_name)
            )
    fsutil.write_text(staging / "README.md", _readme(fmt, vocab, folder, lora_name, vectors))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


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
