"""Per-step time and peak memory of `fit` vs a plain diffusers-style LoRA step, same UNet.

    python benchmarks/fit_overhead.py                  # tiny UNet and SD 1.5's UNet at 256 px
    python benchmarks/fit_overhead.py --tiny           # tiny UNet only (seconds)
    python benchmarks/fit_overhead.py --model sdxl     # SDXL's UNet and text encoders, 256 px

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


def components(model: str) -> tuple[Any, Any, int, int]:
    """UNet, text conditioning, latent side (256 px; tiny: 64) and attention-map side."""
    from creaturekit.conditioning.text import TextConditioning

    if model == "sdxl":
        (tok, enc), (tok2, enc2) = text_encoder(), text_encoder(1280, 32, 20)
        tok2.pad_token = "!"
        # the preset's level: down_blocks.2, the middle block, up_blocks.0 (60 layers)
        return sdxl_unet(), TextConditioning("sdxl", [tok, tok2], [enc, enc2]), 32, 8
    tok, enc = text_encoder()
    unet, latent = (sd15_unet(), 32) if model == "sd15" else (tiny_unet(), 16)
    return unet, TextConditioning("sd", [tok], [enc]), latent, latent // 2


def run(model: str, variant: str) -> dict[str, float]:
    """Mean seconds per optimisation step of one variant, in this process."""
    from diffusers import DDPMScheduler

    from creaturekit.conditioning.mapper import MapperConfig, TokenMapper
    from creaturekit.conditioning.tokens import part_token
    from creaturekit.training.attention import install_attention_recorder
    from creaturekit.training.objective import Objective, add_lora

    torch.manual_seed(0)
    unet, conditioning, latent, attn_side = components(model)
    for encoder in conditioning.text_encoders:
        encoder.requires_grad_(False)
    scheduler = DDPMScheduler()
    lora = add_lora(unet, rank=4)
    latents = torch.randn(BATCH, 4, latent, latent)
    side = latent * 8
    if variant == "plain":
        optimizer = torch.optim.AdamW(lora, lr=1e-4)
        captions = ["a photo of a bird"] * BATCH

        def step() -> None:
            with torch.no_grad():  # diffusers' LoRA examples encode each batch's captions
                embeds = conditioning.encode(captions)
            noise = torch.randn_like(latents)
            t = torch.randint(0, 1000, (BATCH,))
            inputs = conditioning.unet_inputs(embeds, [(side, side)] * BATCH, side)
            pred = unet(scheduler.add_noise(latents, noise, t), t, **inputs).sample
            loss = torch.nn.functional.mse_loss(pred, noise)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    else:
        conditioning.add_part_tokens(9)
        widths = conditioning.widths
        mapper = TokenMapper(
            MapperConfig(
                num_codes=(256,) * 9, dim=sum(widths), depth=3, split=conditioning.mapper_split
            )
        )
        store = install_attention_recorder(unet, resolution=attn_side)
        weight = 0.1 if model == "sdxl" else 0.01
        objective = Objective(conditioning, unet, scheduler, mapper, store, weight, 5.0, side)
        optimizer = torch.optim.AdamW([*lora, *mapper.parameters()], lr=1e-4)
        prompt = "a photo of a " + " ".join(part_token(i) for i in range(9)) + " bird"
        captions = [prompt] * BATCH
        codes = [list(range(9))] * BATCH
        masks = torch.randint(0, 9, (BATCH, 16, 16))

        def step() -> None:
            loss, _ = objective(latents, captions, codes, masks)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    for _ in range(WARMUP):
        step()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    seconds = (time.perf_counter() - start) / STEPS
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds_per_step": round(seconds, 4), "peak_rss_mb": round(peak_mb, 1)}


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


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("tiny", "sd15", "sdxl"):
        print(json.dumps(run(sys.argv[1], sys.argv[2])))
        return
    if sys.argv[1:] == ["dino"]:
        print(json.dumps(dino_forward()))
        return
    models = ["tiny"] if "--tiny" in sys.argv else ["tiny", "sd15"]
    if "--model" in sys.argv:
        models = [sys.argv[sys.argv.index("--model") + 1]]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}")
    for model in models:
        figures = {}
        for variant in ("plain", "creaturekit"):
            out = subprocess.run(
                [sys.executable, __file__, model, variant],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            figures[variant] = json.loads(out.strip().splitlines()[-1])
        plain, ours = figures["plain"], figures["creaturekit"]
        ratio = ours["seconds_per_step"] / plain["seconds_per_step"]
        mem = ours["peak_rss_mb"] / plain["peak_rss_mb"]
        print(
            f"{model:5s} plain {plain['seconds_per_step']:.3f} s/step {plain['peak_rss_mb']:.0f}"
            f" MB | creaturekit {ours['seconds_per_step']:.3f} s/step "
            f"{ours['peak_rss_mb']:.0f} MB | time x{ratio:.3f}, memory x{mem:.3f}"
        )
    if "--tiny" not in sys.argv and "--model" not in sys.argv:
        out = subprocess.run(
            [sys.executable, __file__, "dino"], check=True, capture_output=True, text=True
        ).stdout
        dino = json.loads(out.strip().splitlines()[-1])
        print(
            f"DINOv2-base forward per batch of {BATCH} (the reference's per-step mask "
            f"recomputation): {dino['seconds_per_batch']:.3f} s; stored masks: a read"
        )


if __name__ == "__main__":
    main()
