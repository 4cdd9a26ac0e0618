"""The LoRA file the Stable Diffusion UIs read: kohya keys, training metadata, bundled embeddings.

* Keys: ``lora_unet_<module>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``. For
  SD 1.x/2.x ``<module>`` is the diffusers UNet module path with ``.`` written ``_`` (kohya
  sd-scripts ``networks/lora.py``); for SDXL it is the module's path in the original
  (Stability "SGM") UNet, ``input_blocks_4_1_transformer_blocks_0_attn1_to_q``, as kohya's
  SDXL training writes it (its UNet has the original names), mapped from diffusers' names
  through the UNet's config (:func:`sgm_blocks`). A1111 (``extensions-builtin/Lora``),
  ComfyUI (``comfy/lora.py``) and diffusers (``load_lora_weights``) map these names to
  their models.
* Metadata: kohya's ``ss_*`` training keys (A1111 reads ``ss_base_model_version`` /
  ``ss_v2`` for the model version it shows, ``ss_output_name`` for the alias) and the
  Stability ModelSpec ``modelspec.*`` keys, spelled as kohya's ``library/sai_model_spec.py``
  writes them.
* Bundled embeddings: ``bundle_emb.<name>.string_to_param.*`` = ``(1, dim)`` (SDXL:
  ``bundle_emb.<name>.clip_l`` / ``.clip_g``), the layout A1111 loads as textual-inversion
  embeddings with the LoRA (``<lora:FILE:1>`` makes every name typeable). ComfyUI and
  diffusers do not read them (diffusers refuses the file), so the bundle is a second file
  beside the plain LoRA.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from creaturekit.errors import CreatureKitError
from creaturekit.version import __version__

BUNDLE_PREFIX = "bundle_emb."
#: An SDXL embedding's tensor per text encoder (CLIP ViT-L, OpenCLIP ViT-bigG), in order.
ENCODER_KEYS = ("clip_l", "clip_g")
#: ModelSpec ``implementation`` of a LoRA with the original (SGM) UNet's names.
SGM_IMPLEMENTATION = "https://github.com/Stability-AI/generative-models"
#: The UNet modules creaturekit puts a LoRA on (training/objective.py's targets), in kohya form.
_KOHYA_MODULE = re.compile(
    r"lora_unet_(down_blocks_\d+|up_blocks_\d+|mid_block)_attentions_(\d+)_transformer_blocks_"
    r"(\d+)_(attn[12])_(to_q|to_k|to_v|to_out_0)"
)


#: The same modules under their original (SGM) names, as kohya's SDXL LoRA writes them.
_SGM_MODULE = re.compile(
    r"lora_unet_(input_blocks_\d+_1|middle_block_1|output_blocks_\d+_1)_transformer_blocks_"
    r"(\d+)_(attn[12])_(to_q|to_k|to_v|to_out_0)"
)


def sgm_blocks(unet_config: Mapping[str, Any]) -> dict[str, str]:
    """Each cross-attention block of a diffusers UNet with ``unet_config`` -> its path in
    the original UNet: ``down_blocks.1.attentions.0`` -> ``input_blocks.4.1``.

    Derived from the config: ``input_blocks.0`` is the input convolution, each level has
    ``layers_per_block`` blocks (resnet, then attention at ``.1``) and one more for its
    downsampler (not the last level); ``middle_block.1`` is the middle attention; each
    up level has ``layers_per_block + 1`` blocks, counted in ``output_blocks`` from 0.
    """
    down = list(unet_config["down_block_types"])
    per_level = unet_config["layers_per_block"]
    layers = [int(per_level)] * len(down) if isinstance(per_level, int) else list(per_level)
    out: dict[str, str] = {}
    n = 1
    for level, kind in enumerate(down):
        for i in range(layers[level]):
            if kind.startswith("CrossAttn"):
                out[f"down_blocks.{level}.attentions.{i}"] = f"input_blocks.{n}.1"
            n += 1
        n += 1  # the downsampler (the last level has none: nothing is counted after it)
    mid = unet_config.get("mid_block_type") or "UNetMidBlock2DCrossAttn"
    if mid == "UNetMidBlock2DCrossAttn":
        out["mid_block.attentions.0"] = "middle_block.1"
    n = 0
    for level, kind in enumerate(unet_config["up_block_types"]):
        for i in range(list(reversed(layers))[level] + 1):
            if kind.startswith("CrossAttn"):
                out[f"up_blocks.{level}.attentions.{i}"] = f"output_blocks.{n}.1"
            n += 1
    return out


def diffusers_to_kohya(
    state: dict[str, torch.Tensor], alpha: float, blocks: Mapping[str, str] | None = None
) -> dict[str, torch.Tensor]:
    """diffusers-format UNet LoRA keys -> kohya keys (with one ``alpha`` per module).

    ``blocks`` (:func:`sgm_blocks`, for SDXL) names the modules by their original paths.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith("unet.") or ".lora." not in key:
            raise CreatureKitError(f"Unexpected LoRA key {key!r}; re-run fit with this version.")
        module, kind = key[len("unet.") :].split(".lora.", 1)
        if blocks is not None:
            block, _, inside = module.partition(".transformer_blocks.")
            if block not in blocks or not inside:
                raise CreatureKitError(f"The LoRA key {key!r} is in no attention block.")
            module = f"{blocks[block]}.transformer_blocks.{inside}"
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.lora_{kind}"] = value.contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out


def kohya_to_diffusers(
    state: dict[str, torch.Tensor], blocks: Mapping[str, str] | None = None
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`diffusers_to_kohya` for the modules creaturekit trains, in
    either naming (original names need the UNet's ``blocks``, see :func:`sgm_blocks`).

    ``alpha`` entries are dropped (the run's config.toml holds ``lora_alpha``); bundled
    embeddings are skipped; any other key is refused.
    """
    from_sgm = {v.replace(".", "_"): k for k, v in (blocks or {}).items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(BUNDLE_PREFIX):
            continue
        name, _, kind = key.partition(".")
        if kind not in ("alpha", "lora_down.weight", "lora_up.weight"):
            raise CreatureKitError(f"{key!r} is not a LoRA key creaturekit writes.")
        if match := _KOHYA_MODULE.fullmatch(name):
            block, attention, transformer, attn, proj = match.groups()
            block = re.sub(r"_(\d+)$", r".\1", block) + f".attentions.{attention}"
        elif match := _SGM_MODULE.fullmatch(name):
            sgm, transformer, attn, proj = match.groups()
            if sgm not in from_sgm:
                raise CreatureKitError(
                    f"{key!r} names an attention block the base model's UNet does not have."
                    if blocks
                    else f"{key!r} has the original UNet's names: reading it needs the UNet's "
                    "config."
                )
            block = from_sgm[sgm]
        else:
            raise CreatureKitError(f"{key!r} is not a LoRA key creaturekit writes.")
        if kind == "alpha":
            continue
        module = (
            f"{block}.transformer_blocks.{transformer}.{attn}."
            f"{proj.replace('to_out_0', 'to_out.0')}"
        )
        out[f"unet.{module}.lora.{kind.removeprefix('lora_')}"] = value
    return out


def encoder_embeddings(vector: torch.Tensor, split: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """An SDXL token's vector (both encoders' parts side by side, widths ``split``) as the
    ``{"clip_l": (1, w1), "clip_g": (1, w2)}`` of SDXL embedding files (A1111, ComfyUI)."""
    parts = vector.split(list(split), dim=-1)
    return {key: part[None].contiguous() for key, part in zip(ENCODER_KEYS, parts, strict=True)}


def bundle_embeddings(
    vectors: dict[str, torch.Tensor], split: tuple[int, ...] = ()
) -> dict[str, torch.Tensor]:
    """``{name: vector}`` as A1111's bundled embeddings: one ``(1, dim)`` vector each, or
    for SDXL (``split`` = the encoders' widths) its ``clip_l`` and ``clip_g`` parts."""
    if split:
        return {
            f"{BUNDLE_PREFIX}{name}.{key}": part
            for name, v in vectors.items()
            for key, part in encoder_embeddings(v, split).items()
        }
    return {
        f"{BUNDLE_PREFIX}{name}.string_to_param.*": v[None].contiguous()
        for name, v in vectors.items()
    }


def base_family(width: int, family: str = "sd") -> tuple[str, str]:
    """(kohya ``ss_base_model_version``, ModelSpec architecture) of a base model of
    ``family`` whose (first) text encoder is ``width`` wide. SDXL is kohya's
    ``sdxl_base_v1-0`` (A1111 tells SDXL by the ``sdxl_`` start); of the SD family 1024
    is SD 2.x (OpenCLIP-H), anything else SD 1.x-shaped (SD 1.5 is 768; the toy base has
    SD 1.x's blocks at a small width)."""
    if family == "sdxl":
        return "sdxl_base_v1-0", "stable-diffusion-xl-v1-base"
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
    family: str = "sd",
    steps: int,
    created: datetime.datetime,
    trigger: list[str],
    description: str,
) -> dict[str, str]:
    """kohya ``ss_*`` and ModelSpec ``modelspec.*`` metadata of one exported LoRA file.

    ``fit`` is the run's ``[fit]`` settings; network dim/alpha are written only when the
    run has a LoRA (``rank`` > 0). An SDXL LoRA has the original UNet's names, the
    implementation kohya's ``sai_model_spec.py`` gives SDXL LoRAs.
    """
    version, architecture = base_family(width, family)
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
        # whose module names the keys are: diffusers' UNet (SD 1.x/2.x) or the original (SDXL)
        "modelspec.implementation": SGM_IMPLEMENTATION if family == "sdxl" else "diffusers",
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
