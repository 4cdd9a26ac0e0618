"""The typed configuration of a fit run, its presets, and how settings are layered.

Layering (later wins): the preset, ``[fit] overrides`` in creaturekit.toml, then flags.
The resolved config is saved with the run (``config.toml``) so a run can always be
reproduced or resumed exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, get_type_hints

from creaturekit.errors import ConfigError

MAX_SEED = 2**32 - 1

#: Learning-rate schedules after the warm-up (:func:`lr_scale`).
LR_SCHEDULES = ("constant", "cosine")
#: Optimizer names -> (module, class): AdamW, or bitsandbytes' 8-bit AdamW.
OPTIMIZERS = {"adamw": ("torch.optim", "AdamW"), "adamw8bit": ("bitsandbytes.optim", "AdamW8bit")}

#: Settings a resumed run may change (the others shape the model or the data stream).
RESUMABLE = frozenset(
    {
        "steps",
        "lr",
        "precision",
        "checkpoint_every",
        "checkpoint_minutes",
        "keep_checkpoints",
        "sample_every",
        "sample_steps",
        "log_every",
        "probe_images",
    }
)


@dataclass
class FitConfig:
    """Every hyper-parameter of stage 2 (reference values: docs/method.md, "Fit settings")."""

    model: str = "sd15"  # base model: preset name, hub id or local folder
    resolution: int = 512  # training image side (images are squashed, like discovery)
    steps: int = 75_000  # total optimisation steps (after gradient accumulation)
    batch_size: int = 2
    grad_accum: int = 4
    lr: float = 1e-4  # token mapper, and LoRA unless lora_lr is set
    lora_lr: float = 0.0  # LoRA's own learning rate; 0: the same as lr
    warmup_steps: int = 0  # learning rates rise linearly from 0 over the first N steps
    lr_schedule: str = "constant"  # after the warm-up: "constant", or "cosine" decay to 0
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    rank: int = 4  # LoRA rank (0: textual inversion only, no LoRA)
    lora_alpha: int = 4
    lora_layers: str = "all"  # "all", "cross" (attn2 only) or "self" (attn1 only)
    attn_loss: float = 0.01  # lambda of the attention loss (0 disables it)
    attn_resolution: int = 16  # side of the cross-attention maps the loss uses
    attn_bg_weight: float = 1.0  # the background's weight within the attention loss
    projector_depth: int = 3
    # std of the code embeddings at the start; 0.02 is the value of runs saved before the
    # setting existed, the presets start at the reference's 1.0
    code_init_std: float = 0.02
    snr_gamma: float = 5.0  # Min-SNR gamma (0 disables the weighting)
    template_probability: float = 0.5
    flip: bool = True  # random horizontal flip of image AND part masks
    cache_latents: bool = True  # encode every image once with the VAE
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto, fp32, fp16, bf16 (frozen weights in it, trained in fp32)
    optimizer: str = "adamw"  # "adamw", or "adamw8bit" (bitsandbytes: less optimizer memory)
    seed: int = 42
    checkpoint_every: int = 1000  # a checkpoint every N steps ...
    checkpoint_minutes: float = 30.0  # ... and after M minutes without one (0: steps only)
    keep_checkpoints: int = 3
    sample_every: int = 1000  # 0: no samples during training
    sample_steps: int = 30
    log_every: int = 10
    # training images the end-of-fit probe reads to tell whether each part's codes draw
    # distinct things (creaturekit.training.recognition); 0: no probe
    probe_images: int = 32
    workers: int = 0  # data-loader worker processes

    def validate(self) -> FitConfig:
        """Check value ranges; return self."""
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"fit {name} must be a finite number, got {value}.")
        positive = (
            "resolution",
            "steps",
            "batch_size",
            "grad_accum",
            "attn_resolution",
            "projector_depth",
            "checkpoint_every",
            "keep_checkpoints",
            "log_every",
            "sample_steps",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"fit {name} must be at least 1, got {getattr(self, name)}.")
        if self.lr <= 0:
            raise ConfigError(f"fit lr must be positive, got {self.lr}.")
        if self.lora_lr < 0:
            raise ConfigError(f"fit lora_lr cannot be negative, got {self.lora_lr}.")
        if self.probe_images < 0:
            raise ConfigError(f"fit probe_images cannot be negative, got {self.probe_images}.")
        if self.warmup_steps < 0:
            raise ConfigError(f"fit warmup_steps cannot be negative, got {self.warmup_steps}.")
        if self.code_init_std <= 0:
            raise ConfigError(f"fit code_init_std must be positive, got {self.code_init_std}.")
        if self.rank < 0 or self.attn_loss < 0 or self.snr_gamma < 0 or self.attn_bg_weight < 0:
            raise ConfigError(
                "fit rank, attn_loss, attn_bg_weight and snr_gamma cannot be negative."
            )
        if self.checkpoint_minutes < 0:
            raise ConfigError(
                f"fit checkpoint_minutes cannot be negative, got {self.checkpoint_minutes}."
            )
        if not 0 <= self.seed <= MAX_SEED:  # torch and numpy generators take 32-64 bit seeds
            raise ConfigError(f"fit seed must be between 0 and {MAX_SEED}, got {self.seed}.")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"fit optimizer must be {' or '.join(map(repr, OPTIMIZERS))}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"fit lr_schedule must be {' or '.join(map(repr, LR_SCHEDULES))}.")
        if self.lora_layers not in ("all", "cross", "self"):
            raise ConfigError('fit lora_layers must be "all", "cross" or "self".')
        if self.resolution % 8:
            raise ConfigError(f"fit resolution must be a multiple of 8, got {self.resolution}.")
        return self


#: Named presets. ``sd15`` is the reference implementation's recipe; ``sdxl`` its SDXL
#: recipe where it has one, else the sd15 values (docs/method.md, "Fit settings").
PRESETS: dict[str, FitConfig] = {
    # the reference's code embeddings start at nn.Embedding's std 1.0: at 0.02 the
    # projector's bias makes every code's vector the same for most of a fit
    # (docs/results.md, "Codes distinct from the start")
    "sd15": FitConfig(code_init_std=1.0),
    "sdxl": FitConfig(
        model="sdxl",
        resolution=1024,  # SDXL's native size (diffusers' SDXL LoRA default)
        attn_loss=0.1,  # the reference's SDXL weight
        # the same place in the UNet as SD 1.5's 16 at 512 px: 1/32 of the image, the
        # lowest cross-attention level (docs/method.md, "Attention loss on SDXL")
        attn_resolution=32,
        gradient_checkpointing=True,  # SDXL's UNet is 3x SD 1.5's: memory over speed
        code_init_std=1.0,  # as sd15 (the cause is not family-specific)
    ),
    "toy": FitConfig(
        model="toy",
        resolution=64,
        steps=1500,
        batch_size=16,
        grad_accum=1,
        lr=1e-3,
        # LoRA gentler than the mapper: at the mapper's 1e-3 it drew fewer novel parts right
        # (docs/results.md, "LoRA's own learning rate")
        lora_lr=1e-4,
        rank=4,
        lora_alpha=4,
        # above the reference's 0.01: more novel parts drawn right, the head most
        # (docs/results.md, "Attention-loss weight")
        attn_loss=0.05,
        # the background's terms lighter: it is drawn right more often at the same overall
        # level, with a higher EMR (docs/results.md, "The last levers")
        attn_bg_weight=0.3,
        attn_resolution=16,
        projector_depth=3,
        # codes apart from the start: the quality of 1,500 steps at 0.02 in 500
        # (docs/results.md, "Codes distinct from the start")
        code_init_std=1.0,
        checkpoint_every=250,
        sample_every=500,
        sample_steps=20,
        log_every=10,
    ),
}


def lr_scale(config: FitConfig, step: int) -> float:
    """The factor on every learning rate at optimisation step ``step`` (1-based): the
    linear warm-up, then 1 (``constant``) or a half cosine from 1 that would reach 0
    one step after ``config.steps`` (``cosine``). A function of the step and the config
    alone, so a resumed run follows it (a resume that changes ``steps`` stretches it)."""
    if step < config.warmup_steps:
        return step / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    span = config.steps - config.warmup_steps + 1
    done = min(step - config.warmup_steps, span)
    return 0.5 * (1.0 + math.cos(math.pi * done / span))


def field_names() -> list[str]:
    """Names of every FitConfig value (the keys flags and overrides may set)."""
    return [f.name for f in dataclasses.fields(FitConfig)]


def resolve_fit_config(
    preset: str, overrides: dict[str, Any] | None = None, flags: dict[str, Any] | None = None
) -> FitConfig:
    """``preset`` updated by ``overrides`` (creaturekit.toml) then ``flags`` (None = unset)."""
    if preset not in PRESETS:
        raise ConfigError(f"Unknown fit preset {preset!r}; choose {', '.join(PRESETS)}.")
    hints = get_type_hints(FitConfig)
    values = dataclasses.asdict(PRESETS[preset])
    for source, updates in (
        ("creaturekit.toml [fit] overrides", overrides or {}),
        ("flags", flags or {}),
    ):
        for key, value in updates.items():
            if value is None:
                continue
            if key not in hints:
                raise ConfigError(
                    f"Unknown fit setting {key!r} in {source}; known: {', '.join(hints)}."
                )
            values[key] = _coerce(key, value, hints[key])
    return FitConfig(**values).validate()


def _coerce(key: str, value: Any, expected: Any) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"fit {key} must be {expected.__name__}, got {value!r}.")
    return value


def config_dict(config: FitConfig) -> dict[str, Any]:
    """Plain-data form (what a run's config.toml holds)."""
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any]) -> FitConfig:
    """Rebuild a saved config; unknown keys (from a newer version) are an error."""
    return resolve_fit_config("sd15", flags=data)
