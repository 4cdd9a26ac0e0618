"""How the tools an a1111-format export is made for load it, re-implemented for the tests.

None of these tools is a library on a package registry, so the few functions that read a
LoRA or an embedding are written here from their source (read in December 2026; the names
of the original functions are given so a reader can compare):

* kohya-ss/sd-scripts ``networks/lora.py`` (commit 48d368f): ``LoRANetwork.create_modules``
  names every Linear/Conv2d inside a ``Transformer2DModel`` (and, when loading weights, a
  ``ResnetBlock2D``/``Downsample2D``/``Upsample2D``) ``lora_unet_<path with _>``;
  ``create_network_from_weights`` reads dim from ``lora_down`` and ``alpha``; the weight
  change is ``up @ down * alpha / dim``. For SDXL the UNet is ``library/sdxl_original_unet.py``
  (the original module paths, its attention block class also named ``Transformer2DModel``),
  so the names are ``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``;
  ``library/sdxl_model_util.py`` gives ``ss_base_model_version`` ``sdxl_base_v1-0`` and
  ``library/sai_model_spec.py`` the architecture ``stable-diffusion-xl-v1-base/lora``.
* ComfyUI ``comfy/utils.py`` ``unet_to_diffusers`` (diffusers UNet key -> the original
  LDM key), ``comfy/lora.py`` ``model_lora_keys_unet`` + ``load_lora`` (commit 00728eb;
  keys it does not use are logged "lora key not loaded"), ``comfy/sd1_clip.py``
  ``load_embed`` (``embedding_key`` ``clip_l``; SDXL's second tokenizer in
  ``comfy/sdxl_clip.py`` reads ``clip_g``); the change is ``alpha / rank * up @ down``.
* AUTOMATIC1111 stable-diffusion-webui ``extensions-builtin/Lora/networks.py``
  ``convert_diffusers_name_to_compvis`` and ``load_network`` (``bundle_emb.*`` keys; a key
  that does not convert has ``lora_unet`` replaced by ``diffusion_model``: "SDXL loras seem
  to already have correct compvis keys"), ``network_lora.py`` (``up @ down * alpha / dim``),
  ``network.py`` (``ss_base_model_version`` starting ``sdxl_`` = an SDXL network) and
  ``modules/textual_inversion/textual_inversion.py`` ``create_embedding_from_data`` (a
  dict with ``clip_g`` and ``clip_l`` = an SDXL embedding).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from creaturekit import fsutil

#: An embedding as the web UI holds it: (vectors, dim), or SDXL's tensor per encoder.
Embedding = torch.Tensor | dict[str, torch.Tensor]

# -- the UNet of the original Stable Diffusion code (LDM), as ComfyUI maps diffusers to it --

_ATTENTIONS = ("proj_in", "proj_out", "norm")
_TRANSFORMER = (
    *(f"norm{i}" for i in (1, 2, 3)),
    *(f"attn{i}.{p}" for i in (1, 2) for p in ("to_q", "to_k", "to_v", "to_out.0")),
    "ff.net.0.proj",
    "ff.net.2",
)
_RESNET = {
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
    "in_layers.0": "norm1",
    "out_layers.0": "norm2",
}
_BASIC = {
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",  # SDXL's pooled text + sizes
    "add_embedding.linear_2": "label_emb.0.2",
}
#: ComfyUI's unet_config of SD 1.x (comfy/supported_models.py, model_detection.py).
SD15_COMFY_CONFIG: dict[str, Any] = {
    "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "transformer_depth_middle": 1,
}
#: ComfyUI's unet_config of SDXL (comfy/supported_models.py SDXL, model_detection.py).
SDXL_COMFY_CONFIG: dict[str, Any] = {
    "num_res_blocks": [2, 2, 2],
    "channel_mult": [1, 2, 4],
    "transformer_depth": [0, 0, 2, 2, 10, 10],
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
    "transformer_depth_middle": 10,
}


def unet_to_ldm(config: dict[str, Any]) -> dict[str, str]:
    """ComfyUI's ``unet_to_diffusers``, by module (no ``.weight``): diffusers -> LDM."""
    depth = list(config["transformer_depth"])
    depth_out = list(config["transformer_depth_output"])
    res = config["num_res_blocks"]
    out: dict[str, str] = {}

    def attention(diffusers: str, ldm: str, count: int) -> None:
        for b in _ATTENTIONS:
            out[f"{diffusers}.{b}"] = f"{ldm}.{b}"
        for t in range(count):
            for b in _TRANSFORMER:
                out[f"{diffusers}.transformer_blocks.{t}.{b}"] = f"{ldm}.transformer_blocks.{t}.{b}"

    for x in range(len(config["channel_mult"])):
        n = 1 + (res[x] + 1) * x
        for i in range(res[x]):
            for ldm, diffusers in _RESNET.items():
                out[f"down_blocks.{x}.resnets.{i}.{diffusers}"] = f"input_blocks.{n}.0.{ldm}"
            count = depth.pop(0)
            if count:
                attention(f"down_blocks.{x}.attentions.{i}", f"input_blocks.{n}.1", count)
            n += 1
        out[f"down_blocks.{x}.downsamplers.0.conv"] = f"input_blocks.{n}.0.op"
    attention("mid_block.attentions.0", "middle_block.1", config["transformer_depth_middle"])
    for i, n in enumerate([0, 2]):
        for ldm, diffusers in _RESNET.items():
            out[f"mid_block.resnets.{i}.{diffusers}"] = f"middle_block.{n}.{ldm}"
    up_res = list(reversed(res))
    for x in range(len(config["channel_mult"])):
        n = (up_res[x] + 1) * x
        count_in_block = up_res[x] + 1
        for i in range(count_in_block):
            c = 1
            for ldm, diffusers in _RESNET.items():
                out[f"up_blocks.{x}.resnets.{i}.{diffusers}"] = f"output_blocks.{n}.0.{ldm}"
            count = depth_out.pop()
            if count:
                c += 1
                attention(f"up_blocks.{x}.attentions.{i}", f"output_blocks.{n}.1", count)
            if i == count_in_block - 1:
                out[f"up_blocks.{x}.upsamplers.0.conv"] = f"output_blocks.{n}.{c}.conv"
            n += 1
    return out | _BASIC


def ldm_state_dict(unet: Any, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The UNet's weights under their original LDM names (``model.diffusion_model.*``)."""
    modules = unet_to_ldm(config)
    out = {}
    for key, value in unet.state_dict().items():
        module, _, kind = key.rpartition(".")
        out[f"model.diffusion_model.{modules[module]}.{kind}"] = value
    return out


# -- kohya sd-scripts --------------------------------------------------------------------

_KOHYA_TARGETS = ("Transformer2DModel", "ResnetBlock2D", "Downsample2D", "Upsample2D")


def kohya_modules(unet: Any) -> dict[str, torch.nn.Module]:
    """Every module kohya's LoRANetwork can put a LoRA on, by its LoRA name."""
    names = {}
    for name, module in unet.named_modules():
        if type(module).__name__ in _KOHYA_TARGETS:
            for child_name, child in module.named_modules():
                if type(child).__name__ in ("Linear", "Conv2d"):
                    names[f"lora_unet.{name}.{child_name}".replace(".", "_")] = child
    return names


def kohya_sdxl_modules(unet: Any, config: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """The same for kohya's SDXL UNet: each module by its original path (``unet_to_ldm``)."""
    ldm = unet_to_ldm(config)
    names = {}
    for name, module in unet.named_modules():
        if type(module).__name__ == "Transformer2DModel":
            for child_name, child in module.named_modules():
                if type(child).__name__ in ("Linear", "Conv2d"):
                    names["lora_unet_" + ldm[f"{name}.{child_name}"].replace(".", "_")] = child
    return names


def kohya_deltas(
    lora: dict[str, torch.Tensor], modules: dict[str, torch.nn.Module]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(weight change by LoRA name, keys no module takes) as kohya's network loads them."""
    dims, alphas = {}, {}
    for key, value in lora.items():
        name = key.split(".")[0]
        if "alpha" in key:
            alphas[name] = float(value)
        elif "lora_down" in key:
            dims[name] = value.shape[0]
    deltas = {
        name: lora[f"{name}.lora_up.weight"].flatten(1)
        @ lora[f"{name}.lora_down.weight"].flatten(1)
        * (alphas.get(name, dims[name]) / dims[name])
        for name in dims
        if name in modules
    }
    unused = [k for k in lora if k.split(".")[0] not in deltas]
    return deltas, unused


# -- ComfyUI -----------------------------------------------------------------------------


def comfy_key_map(ldm_keys: list[str], config: dict[str, Any]) -> dict[str, str]:
    """``model_lora_keys_unet``: LoRA name -> the model's weight key (``diffusion_model.*``)."""
    key_map = {}
    for k in ldm_keys:
        if k.startswith("diffusion_model.") and k.endswith(".weight"):
            key_map[
                "lora_unet_" + k[len("diffusion_model.") : -len(".weight")].replace(".", "_")
            ] = k
    for diffusers, ldm in unet_to_ldm(config).items():
        key_map["lora_unet_" + diffusers.replace(".", "_")] = f"diffusion_model.{ldm}.weight"
    return key_map


def comfy_load_lora(
    lora: dict[str, torch.Tensor], key_map: dict[str, str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``load_lora`` (plain LoRA): (weight change by model key, keys "not loaded")."""
    patches, loaded = {}, set()
    for x, target in key_map.items():
        up, down, alpha = f"{x}.lora_up.weight", f"{x}.lora_down.weight", f"{x}.alpha"
        if up not in lora:
            continue
        rank = lora[down].shape[0]
        scale = float(lora[alpha]) / rank if alpha in lora else 1.0
        patches[target] = scale * (lora[up].flatten(1) @ lora[down].flatten(1))
        loaded |= {up, down} | ({alpha} if alpha in lora else set())
    return patches, [k for k in lora if k not in loaded]


def comfy_load_embed(name: str, folder: Path, key: str = "clip_l") -> torch.Tensor | None:
    """``load_embed`` of ``embedding:NAME`` from an embeddings folder (safetensors files), by
    the tokenizer whose ``embedding_key`` is ``key``."""
    path = folder / name
    if not path.is_file():
        path = folder / f"{name}.safetensors"
    if not path.is_file():
        return None
    embed = fsutil.load_safetensors(path)
    if key in embed:
        return embed[key]
    return next(iter(embed.values()))


# -- AUTOMATIC1111 web UI ----------------------------------------------------------------

_RESNET_A1111 = {
    "conv1": "in_layers_2",
    "conv2": "out_layers_3",
    "norm1": "in_layers_0",
    "norm2": "out_layers_0",
    "time_emb_proj": "emb_layers_1",
    "conv_shortcut": "skip_connection",
}


def a1111_compvis_name(key: str) -> str:
    """``convert_diffusers_name_to_compvis`` for SD 1.x UNet names."""
    if m := re.fullmatch(r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", key):
        block, kind, i, rest = int(m[1]), m[2], int(m[3]), m[4]
        suffix = _RESNET_A1111.get(rest, rest) if kind == "resnets" else rest
        return (
            f"diffusion_model_input_blocks_{1 + block * 3 + i}_{int(kind == 'attentions')}_{suffix}"
        )
    if m := re.fullmatch(r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)", key):
        kind, i, rest = m[1], int(m[2]), m[3]
        suffix = _RESNET_A1111.get(rest, rest) if kind == "resnets" else rest
        return f"diffusion_model_middle_block_{1 if kind == 'attentions' else i * 2}_{suffix}"
    if m := re.fullmatch(r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", key):
        block, kind, i, rest = int(m[1]), m[2], int(m[3]), m[4]
        suffix = _RESNET_A1111.get(rest, rest) if kind == "resnets" else rest
        return f"diffusion_model_output_blocks_{block * 3 + i}_{int(kind == 'attentions')}_{suffix}"
    return key


def a1111_sd_version(metadata: dict[str, str]) -> str:
    """``NetworkOnDisk.detect_version``: the model version the web UI files a LoRA under (its
    "Unknown" ones are hidden by a common setting)."""
    if metadata.get("ss_base_model_version", "").startswith("sdxl_"):
        return "SDXL"
    if metadata.get("ss_v2", "") == "True":
        return "SD2"
    return "SD1" if metadata else "Unknown"


def a1111_load_network(
    lora: dict[str, torch.Tensor], layers: set[str]
) -> tuple[dict[str, torch.Tensor], dict[str, Embedding], list[str]]:
    """``load_network``: (weight change by layer name, bundled embeddings, unmatched keys).

    ``layers`` are the web UI's ``network_layer_mapping`` names: the LDM model's module
    paths with ``_`` for ``.`` (``diffusion_model_input_blocks_1_1_...``).
    """
    matched: dict[str, dict[str, torch.Tensor]] = {}
    bundle: dict[str, dict[str, Any]] = {}
    unmatched = []
    for key, weight in lora.items():
        head, _, part = key.partition(".")
        if head == "bundle_emb":
            emb_name, vec_name = part.split(".", 1)
            data = bundle.setdefault(emb_name, {})
            if vec_name.split(".")[0] == "string_to_param":
                data["string_to_param"] = {vec_name.split(".", 1)[1]: weight}
            else:
                data[vec_name] = weight
        name = a1111_compvis_name(head)
        if name not in layers and "lora_unet" in head:  # SDXL: already the original names
            name = head.replace("lora_unet", "diffusion_model")
        if name not in layers:
            unmatched.append(key)
            continue
        matched.setdefault(name, {})[part] = weight
    deltas = {}
    for name, w in matched.items():
        up, down = w["lora_up.weight"], w["lora_down.weight"]
        scale = float(w["alpha"]) / down.shape[0] if "alpha" in w else 1.0
        deltas[name] = up.flatten(1) @ down.flatten(1) * scale
    return deltas, {n: embedding_from_data(d) for n, d in bundle.items()}, unmatched


def embedding_from_data(data: dict[str, Any]) -> Embedding:
    """``create_embedding_from_data`` for safetensors data: the (vectors, dim) tensor, or
    for an SDXL embedding its ``{"clip_l": ..., "clip_g": ...}``."""
    if "clip_g" in data and "clip_l" in data:
        return dict(data)
    if "string_to_param" in data:
        params = data["string_to_param"]
        assert len(params) == 1, "embedding file has multiple terms in it"
        vec = next(iter(params.values()))
    else:
        assert len(data) == 1, "embedding file has multiple terms in it"
        vec = next(iter(data.values()))
    return vec[None] if vec.dim() == 1 else vec


def a1111_embeddings(source: Path) -> dict[str, Embedding]:
    """The embeddings the web UI takes from an export folder's ``embeddings/`` (name = file
    name) or, given a file, from a LoRA's bundled embeddings."""
    if source.is_file():
        return a1111_load_network(fsutil.load_safetensors(source), set())[1]
    return {
        f.stem: embedding_from_data(fsutil.load_safetensors(f))
        for f in sorted((source / "embeddings").glob("*.safetensors"))
    }
