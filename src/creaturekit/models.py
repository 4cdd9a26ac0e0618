"""One place that resolves model references for every stage, and picks device and precision.

A reference is a named preset (``sd15``, ``dinov2-base``...), a local folder, or a hub
id. :func:`load_pretrained` calls the library's own ``from_pretrained`` with it, so a
local folder and a hub id take the same code path; when weights are missing (offline,
not cached, wrong path) the user gets one sentence saying what was looked for and how
to fix it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from creaturekit import fsutil
from creaturekit.errors import ConfigError, ModelNotFoundError, UnsafePathError
from creaturekit.paths import inside

T = TypeVar("T")

# Optional kernels that bitsandbytes (imported by peft and diffusers whenever it is
# installed) fails to fetch on some CPUs are not our users' concern: only errors show.
for _name in ("bitsandbytes", "kernels"):
    logging.getLogger(_name).setLevel(logging.ERROR)

#: Named presets: short names for the models the method uses.
PRESETS: dict[str, str] = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd21-base": "stabilityai/stable-diffusion-2-1-base",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "dinov2-small": "facebook/dinov2-small",
    "dinov2-base": "facebook/dinov2-base",
    "dinov2-large": "facebook/dinov2-large",
    "dino-vits16": "facebook/dino-vits16",
    "dino-vitb16": "facebook/dino-vitb16",
}

#: Presets that are folders shipped inside the package (trained by this project).
BUNDLED: dict[str, Path] = {"toy": Path(__file__).parent / "assets" / "toy-base"}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model reference: where ``from_pretrained`` will look."""

    ref: str  # as the user wrote it
    kind: str  # "preset", "local" or "hub"
    location: str  # a folder path or a hub id

    @property
    def is_local(self) -> bool:
        return Path(self.location).is_dir()


def resolve_model(ref: str, base: Path | None = None, flag: str = "--model") -> ModelRef:
    """Resolve ``ref`` to a local folder or hub id (``flag`` is the option named in errors).

    Relative folders are looked up from the working directory, then from ``base``
    (the project folder), so ``model = "models/sd"`` inside a project keeps working
    after the project moves.
    """
    if not ref or not ref.strip():
        raise ConfigError(f"The model reference is empty; pass {flag} ID_OR_PATH.")
    if ref in BUNDLED:
        if not BUNDLED[ref].is_dir():
            raise ModelNotFoundError(
                f"The {ref!r} base model is not included in this version of creaturekit "
                f"(looked in {BUNDLED[ref]}); pass a Stable-Diffusion-style model with "
                "--model PATH_OR_HUB_ID."
            )
        return ModelRef(ref=ref, kind="preset", location=str(BUNDLED[ref]))
    if ref in PRESETS:
        inner = resolve_model(PRESETS[ref], base, flag)
        return ModelRef(ref=ref, kind="preset", location=inner.location)
    path = Path(ref).expanduser()
    candidates = [path] if path.is_absolute() else [path, *([base / path] if base else [])]
    for candidate in candidates:
        if candidate.is_dir():
            return ModelRef(ref=ref, kind="local", location=str(candidate.resolve()))
    if ref.startswith((".", "/", "~")) or not _HUB_ID.match(ref):
        raise ModelNotFoundError(
            f"The model folder {ref!r} does not exist. Pass an existing folder or a hub id "
            f"with {flag} (presets: {', '.join(PRESETS)})."
        )
    return ModelRef(ref=ref, kind="hub", location=ref)


def project_model(ref: str, root: Path, source: str, flag: str = "--model") -> str:
    """``ref`` read from a project file (``source``), checked like any path the project names.

    Presets and hub ids pass unchanged; a folder or file inside the project (``root``)
    is returned as an absolute path. One outside it is accepted only if the user of this
    machine gave that path themselves before (:func:`trust_model_path`); otherwise it is
    refused, naming ``flag``: a path written in a received project folder is not theirs.
    """
    if not ref or ref in BUNDLED or ref in PRESETS:
        return ref
    path = Path(ref).expanduser()
    looks_like_path = ref.startswith((".", "/", "~")) or not _HUB_ID.match(ref)
    if not looks_like_path and not (root / path).exists():
        return ref  # a hub id
    if not path.is_absolute():
        return str(inside(root, ref, source).resolve())
    if path.resolve().is_relative_to(root.resolve()) or str(path.resolve()) in _trusted():
        return str(path.resolve())
    raise UnsafePathError(
        f"{source} names {ref!r}, outside the project {root}; creaturekit reads only files "
        f"inside a project unless you name them yourself. If you trust that path, pass it "
        f"with {flag} {ref} (remembered on this machine), or use a hub id or a folder inside "
        "the project."
    )


def trust_model_path(ref: str | None) -> None:
    """Remember ``ref`` if it is an existing local path: the user named it themselves.

    Project files may then name it on this machine (a run fitted with ``--model
    /models/sd15`` mixes without repeating it). The list is a JSON file in the user's
    config folder (``$XDG_CONFIG_HOME/creaturekit``), never inside a project.
    """
    if not ref or ref in BUNDLED or ref in PRESETS or not Path(ref).expanduser().exists():
        return
    trusted = _trusted()
    resolved = str(Path(ref).expanduser().resolve())
    if resolved not in trusted:
        fsutil.write_json(_trust_file(), sorted(trusted | {resolved}))


def _trust_file() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "creaturekit" / "trusted-paths.json"


def _trusted() -> set[str]:
    try:
        paths = json.loads(_trust_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()  # none yet, or unreadable: nothing outside a project is trusted
    return {p for p in paths if isinstance(p, str)} if isinstance(paths, list) else set()


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids network attempts."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def missing_weights_message(
    model: ModelRef, what: str, reason: str = "", flag: str = "--model"
) -> str:
    """The one-sentence explanation (plus fix, naming ``flag``) for weights not loaded."""
    if model.kind == "local" or Path(model.location).is_dir():
        detail = f" ({reason})" if reason else ""
        return (
            f"Could not load the {what} from the folder {model.location}{detail}. "
            "Check that it holds a complete model saved with save_pretrained, or pass "
            f"another one with {flag} PATH."
        )
    where = "the hub is disabled (HF_HUB_OFFLINE=1)" if hub_offline() else "the hub is unreachable"
    return (
        f"Could not find the {what} {model.location!r}: it is not in the local Hugging Face "
        f"cache and {where}. Download it on a connected machine "
        f"(`huggingface-cli download {model.location}`) and copy the cache, or pass a local "
        f"folder with {flag} PATH; set HF_HUB_OFFLINE=1 to skip network attempts."
    )


def check_weights_available(
    model: ModelRef, what: str, flag: str = "--model", file: str = "config.json"
) -> None:
    """Refuse at once a hub model that cannot be loaded: the hub is disabled and ``file``
    of it is not in the local cache. Cheap: call it before importing the library that
    loads the model (``transformers`` takes seconds to import)."""
    if model.is_local or not hub_offline():
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(model.location, file), str):
        raise ModelNotFoundError(missing_weights_message(model, what, flag=flag))


def load_pretrained(
    loader: Callable[..., T],
    model: ModelRef | str,
    what: str,
    flag: str = "--model",
    **kwargs: Any,
) -> T:
    """``loader(location, **kwargs)`` (a ``from_pretrained``) with a clear missing-weights error.

    ``what`` names the model in the message, e.g. "feature backbone" or "base model";
    ``flag`` is the option (or setting) the message tells the user to change.
    """
    ref = resolve_model(model, flag=flag) if isinstance(model, str) else model
    from huggingface_hub.errors import HFValidationError

    try:
        with _no_weight_loading_bars():
            return loader(ref.location, **kwargs)
    except (OSError, HFValidationError, ValueError) as err:
        if isinstance(err, ValueError) and not ref.is_local:
            raise  # not about files: a bad argument of ours
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelNotFoundError(missing_weights_message(ref, what, reason[:200], flag)) from err


@contextlib.contextmanager
def _no_weight_loading_bars() -> Iterator[None]:
    """Silence transformers' "Loading weights" bar of every load (our own progress shows the
    work); the hub's download bars stay as they were."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    bars, downloads = (
        hf_logging.is_progress_bar_enabled(),
        not hub_utils.are_progress_bars_disabled(),
    )
    hf_logging.disable_progress_bar()  # also turns the hub's bars off: restore them
    (hub_utils.enable_progress_bars if downloads else hub_utils.disable_progress_bars)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()
        (hub_utils.enable_progress_bars if downloads else hub_utils.disable_progress_bars)()


def select_device(preference: str = "auto") -> Any:
    """The torch device to run on: ``auto`` picks CUDA, then Apple MPS, then CPU."""
    import torch

    if preference != "auto":
        try:
            device = torch.device(preference)
        except RuntimeError as err:
            raise ConfigError(f"Unknown device {preference!r}.") from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for, but no CUDA GPU is available.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def select_dtype(device: Any, preference: str = "auto") -> Any:
    """Compute precision: bf16 where the GPU supports it, else fp16 on GPUs; CPU is fp32
    unless bf16 is asked for."""
    import torch

    if preference == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if preference not in _DTYPES:
        raise ConfigError(f"Unknown precision {preference!r}; choose auto, {', '.join(_DTYPES)}.")
    if device.type == "cpu" and preference == "fp16":
        raise ConfigError("fp16 is not supported for training on the CPU; use fp32 or bf16.")
    dtype = getattr(torch, _DTYPES[preference])
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("This GPU does not support bf16; use fp16 or auto.")
    return dtype
