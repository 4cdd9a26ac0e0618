"""The stages of the toy base model's training: what a step computes and what gates it.

A stage holds its modules (what is checkpointed), computes one step's loss from a
generator (all the step's randomness), measures itself, and saves its result in fp16
into the pipeline folder once it passes its gate (the VAE stage its ``vae/``, the
diffusion stage the whole pipeline), with its figures in the folder's ``training.json``.
:mod:`train_base` runs the steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from creaturekit import fsutil
from creaturekit.conditioning.base_model import BaseModel
from creaturekit.conditioning.pipeline import build_pipeline
from creaturekit.conditioning.tokens import tokenize
from creaturekit.errors import StageMissingError
from creaturekit.models import ModelRef
from creaturekit.progress import track
from creaturekit.toy.oracle import (
    COLUMNS,
    NOT_VISIBLE,
    ORACLE_SIZE,
    Oracle,
    accuracy,
    load_oracle,
)
from creaturekit.toy.world import N_VARIANTS, PARTS, SCENES, make_world
from creaturekit.training.attention import install_attention_recorder
from creaturekit.training.losses import (
    attention_loss,
    diffusion_loss,
    min_snr_weights,
    part_attention,
)
from tools.toy.base_model import (
    IMAGE_SIZE,
    TOY,
    VAE_FACTOR,
    Architecture,
    assemble_pipeline,
    caption,
    half_copy,
    make_scheduler,
    make_text_encoder,
    make_tokenizer,
    make_unet,
    make_vae,
    save_component,
)
from tools.toy.train_oracle import Examples, render_examples

VAE_TRAIN_STREAM, VAE_TEST_STREAM = 11, 12
DIFFUSION_TRAIN_STREAM, DIFFUSION_TEST_STREAM = 21, 22
HELD_OUT: frozenset[tuple[int, ...]] = frozenset(make_world().novel)
"""Part combinations the diffusion stage never trains on (the default world's novel ones)."""
SCENE_NOUNS: tuple[str, ...] = tuple(scene.split()[-1] for scene in SCENES)
"""The word of each scene's caption phrase its attention is tied to ("field")."""
REPORT_NAME = "training.json"
"""Per stage: the measured figures of the saved result (in the pipeline folder)."""


@dataclass(frozen=True)
class StageConfig:
    """Optimisation and bookkeeping shared by the stages (saved with checkpoints)."""

    steps: int
    batch_size: int
    lr: float
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 10
    eval_every: int = 400
    eval_images: int = 256
    final_images: int = 1000
    checkpoint_every: int = 100
    gate: float = 0.97  # lowest oracle accuracy of any column the result must reach
    seed: int = 0


@dataclass(frozen=True)
class VaeConfig(StageConfig):
    """The VAE stage: crops first (4x cheaper), full images for the last steps."""

    steps: int = 12000
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 200
    eval_every: int = 500
    crop: int = 32
    full_from: int = 10000  # steps from here on use whole images (same pixels per batch)
    fg_weight: float = 4.0  # extra loss weight on creature pixels (small parts matter)
    kl_weight: float = 1e-6
    thumb_weight: float = 1.0  # pull latent channels 0-2 to the 4x4-average colours


@dataclass(frozen=True)
class DiffusionConfig(StageConfig):
    """The UNet and text encoder, from scratch, on captions of the drawn creatures.

    The creature covers ~10% of an image and a head ~2%, so an unweighted loss learns the
    scene and the body first and the small parts last; ``fg_weight`` weighs creature
    latents up, and ``attn_weight`` adds the method's attention loss on the caption's
    nouns ("head", "wings", ..., the scene's last word) against the drawings' part masks,
    so that each part's words bind to its region early.
    """

    steps: int = 6000
    batch_size: int = 32
    lr: float = 3e-4
    warmup: int = 500
    weight_decay: float = 1e-2
    eval_every: int = 1000
    eval_images: int = 64  # per set: random combinations, held-out combinations
    final_images: int = 256
    checkpoint_every: int = 250
    gate: float = 0.80
    snr_gamma: float = 5.0
    uncond: float = 0.1  # share of empty captions (for classifier-free guidance)
    drop: float = 0.1  # each part and the scene is left out of a caption this often
    sample_steps: int = 30
    guidance: float = 7.5
    pool: int = 16384  # drawings encoded once by the frozen VAE; steps draw batches from them
    fg_weight: float = 8.0  # extra diffusion-loss weight on creature latents
    attn_weight: float = 0.2  # attention loss (0: none)


class Stage(Protocol):
    """What :func:`train_base.train_stage` needs from a stage."""

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> StageConfig: ...

    @property
    def modules(self) -> dict[str, torch.nn.Module]: ...

    @property
    def onednn(self) -> bool:
        """Whether oneDNN convolutions are faster for this stage's networks on a CPU."""
        ...

    @property
    def done(self) -> bool:
        """Whether the stage's result is final, so training stops before its last step."""
        ...

    def loss(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]: ...

    def evaluate(self, step: int) -> dict[str, float]: ...


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) floats in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_images(pixels: torch.Tensor) -> np.ndarray:
    """The inverse of :func:`to_pixels`, rounded to uint8."""
    scaled = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) between two uint8 image arrays."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * float(np.log10(255.0**2 / max(mse, 1e-10)))


def _random_crops(
    data: Examples, crop: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    x, masks = to_pixels(data.images), torch.from_numpy(data.masks)
    if crop >= x.shape[-1]:
        return x, masks
    offsets = torch.randint(0, x.shape[-1] - crop + 1, (len(x), 2), generator=gen).tolist()
    xs = [x[i, :, a : a + crop, b : b + crop] for i, (a, b) in enumerate(offsets)]
    ms = [masks[i, a : a + crop, b : b + crop] for i, (a, b) in enumerate(offsets)]
    return torch.stack(xs), torch.stack(ms)


@torch.no_grad()
def reconstruct(vae: Any, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Encode (posterior mean) and decode uint8 images."""
    vae.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_pixels(images[start : start + batch_size])
        out.append(to_images(vae.decode(vae.encode(x).latent_dist.mode()).sample))
    return np.concatenate(out)


@torch.no_grad()
def latent_scale(vae: Any, images: np.ndarray) -> float:
    """SD's ``scaling_factor``: one over the standard deviation of the latents."""
    vae.eval()
    latents = vae.encode(to_pixels(images)).latent_dist.sample(torch.Generator().manual_seed(0))
    return float(1.0 / latents.std())


def measure_vae(vae: Any, oracle: Oracle, data: Examples) -> dict[str, float]:
    """PSNR and the oracle's per-column accuracy on reconstructions of ``data``."""
    recon = reconstruct(vae, data.images)
    scores = accuracy(oracle.predict(recon), data.truth)
    return {"psnr": round(psnr(recon, data.images), 2)} | {
        f"acc_{c}": round(a, 4) for c, a in scores.items()
    }


def gate_passed(metrics: dict[str, float], gate: float) -> bool:
    return min(metrics[f"acc_{c}"] for c in COLUMNS) >= gate


def read_reports(out: Path) -> dict[str, Any]:
    """Every stage's measured figures recorded in the pipeline folder ``out``."""
    path = out / REPORT_NAME
    return fsutil.read_json(path) if path.is_file() else {}


def write_report(out: Path, stage: str, report: dict[str, Any]) -> None:
    """Record ``stage``'s measured figures in the pipeline folder's report."""
    fsutil.write_json(out / REPORT_NAME, read_reports(out) | {stage: report})


class VaeStage:
    """Train the AutoencoderKL to reconstruct drawn creatures.

    Loss: L1 + MSE (creature pixels weighted up) + SD's tiny KL, plus a pull of latent
    channels 0-2 towards each 4x4 cell's mean colour, so that colour reaches the
    decoder from the start (a from-scratch VAE otherwise learns hues last).

    Gate: the oracle reads every part and the scene of reconstructions of fresh test
    images with at least ``config.gate`` accuracy (the oracle itself reaches ~98.5%).
    The stage is done once a VAE passing the gate is saved: the diffusion stage needs a
    fixed VAE, not the best one the remaining steps could give.
    """

    name = "vae"
    onednn = False  # plain convolutions: 1.8 s instead of 2.5 s per step (16 crops)

    def __init__(
        self, out: Path, arch: Architecture = TOY, config: VaeConfig | None = None
    ) -> None:
        """The VAE goes to ``out/vae`` (``out``: the pipeline folder)."""
        if IMAGE_SIZE != ORACLE_SIZE:  # pragma: no cover - both are 64 px
            raise ValueError("The toy base model draws at the oracle's size.")
        self.out, self.config = out, config or VaeConfig()
        torch.manual_seed(self.config.seed)
        self.vae = make_vae(arch)
        self.modules: dict[str, torch.nn.Module] = {"vae": self.vae}
        self.oracle = load_oracle()
        self._tests: dict[int, Examples] = {}
        self.done = False

    def loss(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        crop = IMAGE_SIZE if step >= cfg.full_from else cfg.crop
        n = max(1, cfg.batch_size * crop * crop // IMAGE_SIZE**2)
        data = render_examples(n, cfg.seed, VAE_TRAIN_STREAM, start=step * cfg.batch_size)
        x, masks = _random_crops(data, crop, gen)
        posterior = self.vae.encode(x).latent_dist
        y = self.vae.decode(posterior.sample(gen)).sample
        weight = (1.0 + cfg.fg_weight * (masks > 0).float())[:, None]
        error = y - x
        l1 = (weight * error.abs()).sum() / (3 * weight.sum())
        mse = (weight * error.square()).sum() / (3 * weight.sum())
        thumb = (posterior.mean[:, :3] - F.avg_pool2d(x, VAE_FACTOR)).square().mean()
        kl = posterior.kl().mean()
        logs = {"l1": l1.item(), "mse": mse.item(), "thumb": thumb.item(), "kl": kl.item()}
        loss = l1 + mse + cfg.thumb_weight * thumb + cfg.kl_weight * kl
        return loss, {k: round(v, 5) for k, v in logs.items()}

    def test_set(self, n: int) -> Examples:
        """The first ``n`` test images (never trained on), drawn once."""
        if n not in self._tests:
            self._tests[n] = render_examples(n, self.config.seed, VAE_TEST_STREAM)
        return self._tests[n]

    def evaluate(self, step: int) -> dict[str, float]:
        cfg = self.config
        metrics = measure_vae(self.vae, self.oracle, self.test_set(cfg.eval_images))
        if gate_passed(metrics, cfg.gate) or step == cfg.steps:
            self.done = self.export(step)
            metrics |= {"saved": float(self.done)}
        return metrics

    def export(self, step: int) -> bool:
        """Measure the fp16 VAE on ``final_images`` test images; save it if it passes."""
        cfg = self.config
        vae = _fp16_round_trip(self.vae)
        sample = render_examples(64, cfg.seed, VAE_TRAIN_STREAM, start=10**7).images
        vae.register_to_config(scaling_factor=round(latent_scale(vae, sample), 5))
        final = measure_vae(vae, self.oracle, self.test_set(cfg.final_images))
        if not gate_passed(final, cfg.gate):
            return False
        save_component(vae, self.out / "vae")
        write_report(self.out, self.name, {"step": step, "test_images": cfg.final_images, **final})
        return True


def _fp16_round_trip(module: Any) -> Any:
    """A float32 copy with fp16-rounded weights (what the shipped files hold)."""
    return half_copy(module).float()


def pool_combos() -> list[tuple[int, ...]]:
    """Every part combination except the held-out ones, once each, in a fixed random order."""
    every = itertools.product(range(N_VARIANTS), repeat=len(PARTS))
    combos = [c for c in every if c not in HELD_OUT]
    return [combos[i] for i in np.random.default_rng(0).permutation(len(combos))]


@dataclass(frozen=True)
class LatentPool:
    """Training drawings encoded once: VAE posterior (unscaled), truth rows, part labels."""

    mean: torch.Tensor  # (N, 4, h, w)
    std: torch.Tensor  # (N, 4, h, w)
    truth: torch.Tensor  # (N, len(COLUMNS)) int64
    labels: torch.Tensor  # (N, h, w) uint8: 0 background, i + 1 part i (see latent_labels)

    def sample(
        self, batch_size: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
        """A random batch: latents drawn from the posteriors, truth rows, part labels."""
        idx = torch.randint(0, len(self.mean), (batch_size,), generator=gen)
        noise = torch.randn((batch_size, *self.mean.shape[1:]), generator=gen)
        latents = self.mean[idx] + self.std[idx] * noise
        return latents, self.truth[idx].numpy(), self.labels[idx].long()


def latent_labels(masks: np.ndarray) -> torch.Tensor:
    """(N, S, S) part masks -> (N, S/4, S/4) uint8: each latent cell's most common label."""
    one_hot = F.one_hot(torch.from_numpy(masks).long(), len(PARTS) + 1).permute(0, 3, 1, 2)
    return F.avg_pool2d(one_hot.float(), VAE_FACTOR).argmax(1).to(torch.uint8)


@torch.no_grad()
def build_latent_pool(
    vae: Any, n: int, seed: int, cache: Path | None = None, batch_size: int = 64
) -> LatentPool:
    """Draw ``n`` creatures (every trainable combination in turn) and encode them once.

    With ``cache``, the pool is kept there (safetensors) and reused while the VAE, ``n``
    and ``seed`` are the same.
    """
    key = {"vae": _fingerprint(vae), "n": str(n), "seed": str(seed), "fields": "labels"}
    if cache is not None and cache.is_file():
        from safetensors import safe_open

        with safe_open(str(cache), "pt") as fh:
            if fh.metadata() == key:
                return LatentPool(**load_file(str(cache)))
    vae.eval()
    combos, chunks = pool_combos(), []
    for start in track(range(0, n, batch_size), "encoding drawings"):
        data = render_examples(
            min(batch_size, n - start), seed, DIFFUSION_TRAIN_STREAM, combos, start
        )
        posterior = vae.encode(to_pixels(data.images)).latent_dist
        truth = torch.from_numpy(data.truth)
        chunks.append((posterior.mean, posterior.std, truth, latent_labels(data.masks)))
    pool = LatentPool(*(torch.cat(parts) for parts in zip(*chunks, strict=True)))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        tensors = {"mean": pool.mean, "std": pool.std, "truth": pool.truth, "labels": pool.labels}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=key)
        tmp.replace(cache)
    return pool


def _fingerprint(module: torch.nn.Module) -> str:
    """A short digest of a module's weights (which VAE a cached pool was encoded with)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().numpy().tobytes())
    return h.hexdigest()[:16]


def training_caption(
    truth: np.ndarray, drop: float, uncond: float, gen: torch.Generator
) -> tuple[str, list[int]]:
    """A caption of one truth row: visible parts (each sometimes left out), any order.

    Also returns the mask labels it names: 0 for the scene, ``i + 1`` for part ``i``.
    """
    coins = torch.rand(len(PARTS) + 2, generator=gen).tolist()
    if coins[-1] < uncond:
        return "", []
    parts = [p for i, p in enumerate(PARTS) if truth[i] != NOT_VISIBLE and coins[i] >= drop]
    if coins[-2] < 0.5:
        parts = [parts[i] for i in torch.randperm(len(parts), generator=gen).tolist()]
    scene = int(truth[len(PARTS)]) if coins[len(PARTS)] >= drop else None
    named = [PARTS.index(p) + 1 for p in parts] + ([] if scene is None else [0])
    return caption([max(0, int(v)) for v in truth[: len(PARTS)]], scene, parts), named


def noun_positions(
    input_ids: torch.Tensor,
    truth: np.ndarray,
    named: list[int],
    noun_ids: dict[str, tuple[int, ...]],
) -> list[tuple[int, int]]:
    """(token position, mask label) of each named label's noun in one tokenised caption.

    A part's noun is its name ("head"); the scene's is its last word ("field"). The
    position is the noun's last token (SD's tokenizer has one token for each of them).
    """
    ids = input_ids.tolist()
    out = []
    for label in named:
        noun = noun_ids[PARTS[label - 1] if label else SCENE_NOUNS[int(truth[len(PARTS)])]]
        starts = [
            i for i in range(len(ids) - len(noun) + 1) if tuple(ids[i : i + len(noun)]) == noun
        ]
        if starts:
            out.append((starts[0] + len(noun) - 1, label))
    return out


class DiffusionStage:
    """Train the UNet and the CLIP text model (from scratch) on the frozen VAE's latents.

    Data: a pool of ``config.pool`` drawings covering every trainable combination, encoded
    once (kept in ``cache``); each step samples latents from it and captions them afresh.
    Loss: SD's epsilon prediction with Min-SNR weighting. Measured by the oracle on
    images generated from captions naming every part and the scene (``sample_steps``
    DDIM steps with guidance): random combinations and the held-out ones. Whenever a
    measurement passes the gate (and at the last step), the pipeline is saved.

    ``warm_start`` starts from the UNet and text encoder of the saved pipeline (a new phase
    with its own schedule, e.g. to train a saved model further in a later session); the
    saved report then counts the steps of every phase.
    """

    name = "diffusion"
    onednn = True  # oneDNN: 1.8 s instead of 2.1 s per UNet step (batch 32)
    done = False  # every step runs: quality keeps improving after the gate first passes

    def __init__(
        self,
        out: Path,
        arch: Architecture = TOY,
        config: DiffusionConfig | None = None,
        cache: Path | None = None,
        warm_start: bool = False,
    ) -> None:
        from diffusers import AutoencoderKL

        if not (out / "vae").is_dir():
            raise StageMissingError(f"No trained VAE in {out / 'vae'}; run the vae stage first.")
        self.out, self.arch = out, arch
        self.config = config or DiffusionConfig()
        self.vae = AutoencoderKL.from_pretrained(out / "vae", torch_dtype=torch.float32).eval()
        self.vae.requires_grad_(False)
        torch.manual_seed(self.config.seed)
        self.tokenizer = make_tokenizer(arch)
        self.text_encoder = make_text_encoder(arch, self.tokenizer)
        self.unet = make_unet(arch)
        self.scheduler = make_scheduler(arch)
        self.modules: dict[str, torch.nn.Module] = {
            "unet": self.unet,
            "text_encoder": self.text_encoder,
        }
        self.phases: list[int] = []  # steps of the earlier phases this one continues
        if warm_start:
            self.phases = self._load_saved()
        self.oracle = load_oracle()
        self.cache = cache
        self._pool: LatentPool | None = None
        self.store = install_attention_recorder(self.unet, IMAGE_SIZE // VAE_FACTOR)
        nouns = [*PARTS, *SCENE_NOUNS]
        self.noun_ids = {
            n: tuple(self.tokenizer(n, add_special_tokens=False).input_ids) for n in nouns
        }

    def _load_saved(self) -> list[int]:
        """Load the UNet and text encoder of the saved pipeline; return its phases' steps."""
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        report = read_reports(self.out).get(self.name)
        if report is None or not (self.out / "model_index.json").is_file():
            raise StageMissingError(
                f"No saved diffusion stage in {self.out} to start from; train one first."
            )
        for name, loader in (("unet", UNet2DConditionModel), ("text_encoder", CLIPTextModel)):
            saved = loader.from_pretrained(self.out / name, torch_dtype=torch.float32)
            self.modules[name].load_state_dict(saved.state_dict())
        return list(report["phases"])

    @property
    def pool(self) -> LatentPool:
        """The encoded training drawings (built, or read from the cache, on first use)."""
        if self._pool is None:
            cfg = self.config
            self._pool = build_latent_pool(self.vae, cfg.pool, cfg.seed, self.cache)
        return self._pool

    def loss(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        latents, truth, labels = self.pool.sample(cfg.batch_size, gen)
        latents = latents * self.vae.config.scaling_factor
        captions, named = zip(
            *(training_caption(row, cfg.drop, cfg.uncond, gen) for row in truth), strict=True
        )
        noise = torch.randn(latents.shape, generator=gen)
        steps = self.scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (len(latents),), generator=gen)
        noisy = self.scheduler.add_noise(latents, noise, t)
        input_ids = tokenize(self.tokenizer, list(captions))
        hidden = self.text_encoder(input_ids)[0]
        self.store.reset()
        self.store.active = cfg.attn_weight > 0
        pred = self.unet(noisy, t, encoder_hidden_states=hidden).sample
        weights = min_snr_weights(self.scheduler.alphas_cumprod, t, cfg.snr_gamma, "epsilon")
        fg = 1.0 + cfg.fg_weight * (labels > 0).float()[:, None]
        loss = diffusion_loss(pred, noise, weights, pixel_weights=fg)
        logs = {"diffusion": round(loss.item(), 5)}
        if cfg.attn_weight > 0:
            found = [
                noun_positions(ids, row, n, self.noun_ids)
                for ids, row, n in zip(input_ids, truth, named, strict=True)
            ]
            # labels the caption does not name are no target (-1)
            unnamed = torch.tensor([[k not in n for k in range(len(PARTS) + 1)] for n in named])
            targets = torch.where(unnamed.gather(1, labels.flatten(1)).view_as(labels), -1, labels)
            maps = part_attention(self.store.maps(), found, len(PARTS) + 1)
            self.store.reset()  # the graph keeps what backward needs; copies must not
            attn = attention_loss(maps, targets)
            loss = loss + cfg.attn_weight * attn
            logs["attention"] = round(attn.item(), 5)
        return loss, logs

    def test_sets(self, n: int) -> dict[str, np.ndarray]:
        """Truth rows (every part requested) of random and of held-out combinations."""
        rng = np.random.default_rng([self.config.seed, DIFFUSION_TEST_STREAM])
        held_out = sorted(HELD_OUT)
        combos = {
            "random": rng.integers(0, N_VARIANTS, (n, len(PARTS))),
            "novel": np.asarray([held_out[i % len(held_out)] for i in range(n)]),
        }
        scenes = rng.integers(0, len(SCENES), (2, n, 1))
        return {
            name: np.concatenate([c, s], axis=1)
            for (name, c), s in zip(combos.items(), scenes, strict=True)
        }

    def generate(self, truth: np.ndarray, seed: int) -> np.ndarray:
        """Images (uint8) generated from the full captions of ``truth`` rows."""
        for module in self.modules.values():
            module.eval()
        self.store.active = False
        cfg = self.config
        return generate_from_truth(self.base_model(), truth, cfg.sample_steps, cfg.guidance, seed)

    def base_model(self) -> BaseModel:
        """The stage's modules as an SD-family base model (what the product's pipeline takes)."""
        return BaseModel(
            ref=ModelRef(ref=str(self.out), kind="local", location=str(self.out)),
            family="sd",
            tokenizers=(self.tokenizer,),
            text_encoders=(self.text_encoder,),
            vae=self.vae,
            unet=self.unet,
            scheduler=self.scheduler,
        )

    def measure(self, n: int) -> dict[str, float]:
        """Oracle accuracy per column (and the mean over parts) on generated images."""
        metrics: dict[str, float] = {}
        for name, truth in self.test_sets(n).items():
            scores = accuracy(self.oracle.predict(self.generate(truth, 0)), truth)
            metrics |= {f"{name}_{c}": round(a, 4) for c, a in scores.items()}
            metrics[f"{name}_parts"] = round(float(np.mean([scores[p] for p in PARTS])), 4)
        return metrics

    def evaluate(self, step: int) -> dict[str, float]:
        metrics = self.measure(self.config.eval_images)
        if self._passed(metrics) or step == self.config.steps:
            metrics |= {"saved": float(self.export(step))}
        return metrics

    def _passed(self, metrics: dict[str, float]) -> bool:
        worst = min(metrics[f"{name}_{p}"] for name in ("random", "novel") for p in PARTS)
        return worst >= self.config.gate

    def export(self, step: int) -> bool:
        """Measure on ``final_images``; save the fp16 pipeline if it passes or at the end.

        An earlier result that passed the gate is not replaced by a final one that fails.
        Returns whether the pipeline was saved.
        """
        final = self.measure(self.config.final_images)
        passed = self._passed(final)
        reports = read_reports(self.out)
        if not passed and reports.get(self.name, {}).get("gate_passed"):
            return False
        if not passed and step != self.config.steps:
            return False
        report = {
            "step": sum(self.phases) + step,
            "phases": [*self.phases, step],
            "test_images": self.config.final_images,
            "gate_passed": passed,
        }
        assemble_pipeline(
            self.out, vae=self.vae, text_encoder=self.text_encoder, unet=self.unet, arch=self.arch
        )  # a new folder: the report (the VAE stage's figures too) is written into it again
        fsutil.write_json(self.out / REPORT_NAME, reports | {self.name: report | final})
        return True


@torch.no_grad()
def generate_from_truth(
    base: BaseModel,
    truth: np.ndarray,
    steps: int,
    guidance: float,
    seed: int,
    batch_size: int = 32,
) -> np.ndarray:
    """Images (uint8) that ``base`` (a base model's modules) draws from the full captions
    of ``truth`` rows; batch ``i`` uses the generator seeded ``seed + i * batch_size``.
    """
    pipe = build_pipeline(base)
    prompts = [caption(list(row[: len(PARTS)]), int(row[len(PARTS)])) for row in truth]
    out = []
    for start in range(0, len(prompts), batch_size):
        images = pipe(
            prompts[start : start + batch_size],
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=IMAGE_SIZE,
            width=IMAGE_SIZE,
            generator=torch.Generator().manual_seed(seed + start),
            output_type="np",
        ).images
        out.append(np.rint(images * 255).astype(np.uint8))
    return np.concatenate(out)


STAGES: dict[str, Callable[..., Stage]] = {"vae": VaeStage, "diffusion": DiffusionStage}
"""The stages in training order."""
CONFIGS: dict[str, Callable[[], StageConfig]] = {"vae": VaeConfig, "diffusion": DiffusionConfig}
"""Each stage's configuration (its defaults are the recipe of the shipped model)."""


def stage_finished(name: str, out: Path) -> bool:
    """Whether stage ``name``'s final result is already saved in the pipeline folder."""
    report = read_reports(out).get(name)
    if report is None:
        return False
    if name == "vae":
        return (out / "vae").is_dir()
    return (out / "model_index.json").is_file() and report["step"] >= DiffusionConfig().steps
