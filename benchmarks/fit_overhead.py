"""Per-step time and peak memory of `fit` vs a plain diffusers-style LoRA step, same UNet.

    python benchmarks/fit_overhead.py                  # tiny UNet and SD 1.5's UNet at 256 px
    python benchmarks/fit_overhead.py --tiny           # tiny UNet only (seconds)
    python benchmarks/fit_overhead.py --model sdxl     # SDXL's UNet and text encoders, 256 px
    # on a GPU (the issue's measurement): real architectures, random weights, fp16
    python benchmarks/fit_overhead.py --device cuda --precision fp16 --model sd15 --px 512
    python benchmarks/fit_overhead.py --device cuda --precision fp16 --model sdxl --px 1024

Both variants train a rank-4 LoRA on to_q/to_k/to_v/to_out.0 with AdamW, batch 2, on
the CPU with random weights (no download). "plain" is what diffusers' LoRA example
does per step: caption encoding (no grad), noise, UNet, MSE (for SDXL, as its SDXL LoRA
example: both text encoders, pooled text and size ids). "creaturekit" adds what fit
adds: part tokens through the token mapper into the text encoder(s) (with gradient),
the cross-attention recorder, Min-SNR weighting and the attention loss. Both encode
through creaturekit's TextConditioning (equal to diffusers' encode_prompt, tested in
tests/test_sdxl.py). Each (model, variant) runs in a fresh process so its peak memory
(max RSS) is its own. It also times one DINOv2-base forward pass per batch, which the
reference implementation ran every step to recompute part masks, against reading the
stored masks.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import torch

STEPS, WARMUP, BATCH = 4, 1, 2


def sd15_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32,
        cross_attention_dim=768,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        layers_per_block=2,
        attention_head_dim=8,
    )


def tiny_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        cross_attention_dim=768,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=4,
    )


def sdxl_unet() -> Any:
    """SDXL base's UNet architecture (its config), random weights."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=128,
        cross_attention_dim=2048,
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        layers_per_block=2,
        attention_head_dim=(5, 10, 20),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )


def text_encoder(width: int = 768, layers: int = 12, heads: int = 12) -> tuple[Any, Any]:
    """The real CLIP tokenizer and a random CLIP text model of the given size (SD 1.5's and
    SDXL's first: 768 wide, 12 layers; SDXL's second, with projection: 1280, 32, 20)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from creaturekit.clip_vocab import clip_tokenizer

    tok = clip_tokenizer()
    cfg = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        projection_dim=width,
    )
    return tok, (CLIPTextModel if width == 768 else CLIPTextModelWithProjection)(cfg)


def components(model: str, px: int) -> tuple[Any, Any, int, int]:
    """UNet, text conditioning, latent side (``px`` / 8; tiny: 64 px / 4) and the side of
    the attention maps the loss uses (the presets' level)."""
    from creaturekit.conditioning.text import TextConditioning

    if model == "sdxl":
        (tok, enc), (tok2, enc2) = text_encoder(), text_encoder(1280, 32, 20)
        tok2.pad_token = "!"
        # the preset's level: down_blocks.2, the middle block, up_blocks.0 (60 layers)
        conditioning = TextConditioning("sdxl", [tok, tok2], [enc, enc2])
        return sdxl_unet(), conditioning, px // 8, px // 32
    tok, enc = text_encoder()
    conditioning = TextConditioning("sd", [tok], [enc])
    if model == "sd15":  # the preset's level: 16 at 512 px (down_blocks.2, up_blocks.1)
        return sd15_unet(), conditioning, px // 8, px // 32
    return tiny_unet(), conditioning, 16, 8


def run(model: str, variant: str, args: argparse.Namespace) -> dict[str, float]:
    """Mean seconds per optimisation step of one variant, in this process, and its peak
    memory (CPU: max RSS; GPU: peak allocated)."""
    from diffusers import DDPMScheduler

    from creaturekit.conditioning.mapper import MapperConfig, TokenMapper
    from creaturekit.conditioning.tokens import part_token
    from creaturekit.training.attention import install_attention_recorder
    from creaturekit.training.objective import Objective, add_lora

    device = torch.device(args.device)
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.precision)
    torch.manual_seed(0)
    unet, conditioning, latent, attn_side = components(model, args.px)
    # as fit (and diffusers' LoRA training): frozen weights in the compute precision
    for module in (*conditioning.text_encoders, unet):
        module.requires_grad_(False)
        module.to(device, dtype=half or torch.float32)
    scheduler = DDPMScheduler()
    lora = add_lora(unet, rank=4)
    for param in lora:
        param.data = param.data.float()
    latents = torch.randn(BATCH, 4, latent, latent, device=device)
    side = latent * 8
    if variant == "plain":
        optimizer = torch.optim.AdamW(lora, lr=1e-4)
        captions = ["a photo of a bird"] * BATCH

        def loss() -> torch.Tensor:
            with torch.no_grad():  # diffusers' LoRA examples encode each batch's captions
                embeds = conditioning.encode(captions)
            noise = torch.randn_like(latents)
            t = torch.randint(0, 1000, (BATCH,), device=device)
            inputs = conditioning.unet_inputs(embeds, [(side, side)] * BATCH, side)
            pred = unet(scheduler.add_noise(latents, noise, t), t, **inputs).sample
            return torch.nn.functional.mse_loss(pred.float(), noise)
    else:
        conditioning.add_part_tokens(9)
        mapper = TokenMapper(
            MapperConfig(
                num_codes=(256,) * 9,
                dim=sum(conditioning.widths),
                depth=3,
                split=conditioning.mapper_split,
            )
        ).to(device)
        store = install_attention_recorder(unet, resolution=attn_side)
        weight = 0.1 if model == "sdxl" else 0.01
        objective = Objective(conditioning, unet, scheduler, mapper, store, weight, 5.0, side)
        optimizer = torch.optim.AdamW([*lora, *mapper.parameters()], lr=1e-4)
        prompt = "a photo of a " + " ".join(part_token(i) for i in range(9)) + " bird"
        captions = [prompt] * BATCH
        codes = [list(range(9))] * BATCH
        masks = torch.randint(0, 9, (BATCH, 16, 16), device=device)

        def loss() -> torch.Tensor:
            return objective(latents, captions, codes, masks)[0]

    def step() -> None:
        with torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None):
            value = loss()
        value.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(WARMUP):
        step()
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds_per_step": round(seconds, 4), "peak_mb": round(peak_mb, 1)}


def dino_forward() -> dict[str, float]:
    """Seconds of one DINOv2-base forward pass on a batch at 224 px (random weights)."""
    from transformers import Dinov2Config, Dinov2Model

    model = Dinov2Model(Dinov2Config(image_size=224, patch_size=14)).eval()
    pixels = torch.randn(BATCH, 3, 224, 224)
    with torch.no_grad():
        model(pixels)
        start = time.perf_counter()
        for _ in range(STEPS):
            model(pixels)
    return {"seconds_per_batch": round((time.perf_counter() - start) / STEPS, 4)}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny UNet only")
    parser.add_argument("--model", choices=("tiny", "sd15", "sdxl"), action="append")
    parser.add_argument("--steps", type=int, default=STEPS, help="timed steps per variant")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--px", type=int, default=256, help="image side (sd15, sdxl)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # MODEL VARIANT, or dino
    return parser.parse_args()


def main() -> None:
    args = arguments()
    if args.child == ["dino"]:
        print(json.dumps(dino_forward()))
        return
    if args.child:
        print(json.dumps(run(*args.child, args)))
        return
    models = args.model or (["tiny"] if args.tiny else ["tiny", "sd15"])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, "
        f"{args.px} px, {args.precision} on {args.device}, {args.steps} timed steps"
    )
    passed = [f"--{k}={getattr(args, k)}" for k in ("steps", "device", "px", "precision")]
    unit = "GPU peak allocated" if args.device.startswith("cuda") else "peak RSS"
    for model in models:
        figures = {}
        for variant in ("plain", "creaturekit"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", model, variant, *passed],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            figures[variant] = json.loads(out.strip().splitlines()[-1])
        plain, ours = figures["plain"], figures["creaturekit"]
        ratio = ours["seconds_per_step"] / plain["seconds_per_step"]
        mem = ours["peak_mb"] / plain["peak_mb"]
        print(
            f"{model:5s} plain {plain['seconds_per_step']:.3f} s/step {plain['peak_mb']:.0f}"
            f" MB | creaturekit {ours['seconds_per_step']:.3f} s/step "
            f"{ours['peak_mb']:.0f} MB ({unit}) | time x{ratio:.3f}, memory x{mem:.3f}"
        )
    if not args.tiny and not args.model:
        out = subprocess.run(
            [sys.executable, __file__, "--child", "dino"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        dino = json.loads(out.strip().splitlines()[-1])
        print(
            f"DINOv2-base forward per batch of {BATCH} (the reference's per-step mask "
            f"recomputation): {dino['seconds_per_batch']:.3f} s; stored masks: a read"
        )


if __name__ == "__main__":
    main()
