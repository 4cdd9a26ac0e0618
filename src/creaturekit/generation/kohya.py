"""The LoRA file the Stable Diffusion UIs read: kohya keys, training metadata, bundled embeddings.

* Keys: ``lora_unet_<module>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``, where
  ``<module>`` is the diffusers UNet module path with ``.`` written ``_`` (kohya
  sd-scripts ``networks/lora.py``); A1111 (``extensions-builtin/Lora``), ComfyUI
  (``comfy/lora.py``) and diffusers (``load_lora_weights``) map these names to their models.
* Metadata: kohya's ``ss_*`` training keys (A1111 reads ``ss_base_model_version`` /
  ``ss_v2`` for the model version it shows, ``ss_output_name`` for the alias) and the
  Stability ModelSpec ``modelspec.*`` keys, spelled as kohya's ``library/sai_model_spec.py``
  writes them.
* Bundled embeddings: ``bundle_emb.<name>.string_to_param.*`` = ``(1, dim)``, the layout
  A1111 loads as textual-inversion embeddings with the LoRA (``<lora:FILE:1>`` makes every
  name typeable). ComfyUI and diffusers do not read them (diffusers refuses the file), so
  the bundle is a second file beside the plain LoRA.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import torch

from creaturekit.errors import CreatureKitError
from creaturekit.version import __version__

BUNDLE_PREFIX = "bundle_emb."
#: The UNet modules creaturekit puts a LoRA on (training/objective.py's targets), in kohya form.
_KOHYA_MODULE = re.compile(
    r"lora_unet_(down_blocks_\d+|up_blocks_\d+|mid_block)_attentions_(\d+)_transformer_blocks_"
    r"(\d+)_(attn[12])_(to_q|to_k|to_v|to_out_0)"
)


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


def kohya_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`diffusers_to_kohya` for the modules creaturekit trains.

    ``alpha`` entries are dropped (the run's config.toml holds ``lora_alpha``); bundled
    embeddings are skipped; any other key is refused.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(BUNDLE_PREFIX):
            continue
        name, _, kind = key.partition(".")
        match = _KOHYA_MODULE.fullmatch(name)
        if match is None or kind not in ("alpha", "lora_down.weight", "lora_up.weight"):
            raise CreatureKitError(f"{key!r} is not a LoRA key creaturekit writes.")
        if kind == "alpha":
            continue
        block, attention, transformer, attn, proj = match.groups()
        block = re.sub(r"_(\d+)$", r".\1", block)
        module = (
            f"{block}.attentions.{attention}.transformer_blocks.{transformer}."
            f"{attn}.{proj.replace('to_out_0', 'to_out.0')}"
        )
        out[f"unet.{module}.lora.{kind.removeprefix('lora_')}"] = value
    return out


def bundle_embeddings(vectors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{name: vector}`` as A1111's bundled embeddings (one ``(1, dim)`` vector each)."""
    return {
        f"{BUNDLE_PREFIX}{name}.string_to_param.*": v[None].contiguous()
        for name, v in vectors.items()
    }


def base_family(width: int) -> tuple[str, str]:
    """(kohya ``ss_base_model_version``, ModelSpec architecture) of a base model whose text
    encoder is ``width`` wide: 1024 is SD 2.x (OpenCLIP-H), anything else SD 1.x-shaped
    (SD 1.5 is 768; the toy base has SD 1.x's blocks at a small width)."""
    if width == 1024:
        return "sd_v2", "stable-diffusion-v2-512"
    return "sd_v1", "stable-diffusion-v1"


def lora_metadata(
    *,
    output_name: str,
    run: str,
    fit: dict[str, Any],
    base_model: str,
    width: int,
    steps: int,
    created: datetime.datetime,
    trigger: list[str],
    description: str,
) -> dict[str, str]:
    """kohya ``ss_*`` and ModelSpec ``modelspec.*`` metadata of one exported LoRA file.

    ``fit`` is the run's ``[fit]`` settings; network dim/alpha are written only when the
    run has a LoRA (``rank`` > 0).
    """
    version, architecture = base_family(width)
    resolution = int(fit["resolution"])
    meta = {
        "ss_output_name": output_name,
        "ss_base_model_version": version,
        "ss_v2": str(version == "sd_v2"),
        # a local folder by its name only, as kohya writes it (no user's path in a shared file)
        "ss_sd_model_name": Path(base_model).name if Path(base_model).is_absolute() else base_model,
        "ss_resolution": f"({resolution}, {resolution})",
        "ss_steps": str(steps),
        "ss_seed": str(fit.get("seed", "")),
        "ss_training_comment": f"creaturekit {__version__}, run {run}",
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": f"{architecture}/lora",
        "modelspec.implementation": "diffusers",  # module names of diffusers' UNet (kohya: same)
        "modelspec.implementation_version": f"creaturekit/{__version__}",
        "modelspec.title": f"creaturekit {run}",
        "modelspec.description": description,
        "modelspec.date": created.replace(microsecond=0).isoformat(),
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.trigger_phrase": ", ".join(trigger),
        "modelspec.tags": "creaturekit, parts, textual-inversion",
    }
    if int(fit["rank"]) > 0:
        meta |= {
            "ss_network_module": "networks.lora",
            "ss_network_dim": str(int(fit["rank"])),
            "ss_network_alpha": str(float(fit["lora_alpha"])),
            "ss_unet_lr": str(fit.get("lora_lr", "")),
        }
    return meta
