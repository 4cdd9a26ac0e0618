"""A run folder ``runs/<name>/``: file names shared by the trainer and by readers.

config.toml                  the resolved FitConfig + base model (and its family) + version
vocab.json                   the part vocabulary (tokens, names, K per part, discovery stamp)
log.jsonl                    one line per logged step: step, losses, lr, seconds
samples/step-000500.png      sample images from fixed seeds and prompts
checkpoints/step-000250/     resumable state (see training/checkpoint.py)
mapper.safetensors           the trained token mapper (config in its metadata)
pytorch_lora_weights.safetensors   the LoRA, diffusers format (pipe.load_lora_weights)
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from creaturekit import fsutil
from creaturekit.conditioning.base_model import FAMILIES
from creaturekit.errors import ConfigError, CreatureKitError
from creaturekit.paths import check_name
from creaturekit.training.fit_config import RESUMABLE, FitConfig, config_dict, config_from_dict
from creaturekit.version import __version__

if TYPE_CHECKING:
    from creaturekit.project import Project

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "config.toml"
VOCAB_FILE = "vocab.json"
LOG_FILE = "log.jsonl"
MAPPER_FILE = "mapper.safetensors"
LORA_FILE = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class VocabPart:
    """One part token of a run: the discovered part it stands for and its codes."""

    index: int  # the discovered part's index
    is_background: bool
    name: str  # the part's name when the run was fitted
    subconcepts: int  # codes 0 .. subconcepts - 1
    token: str  # the pseudo-word, e.g. <part_0>
    token_id: int  # its id in the base model's tokenizer


@dataclass(frozen=True)
class RunVocab:
    """A run's part vocabulary (``vocab.json``) and the discovery result it was fitted on."""

    discovery_stamp: str
    images_hash: str
    category: str
    parts: list[VocabPart]

    @classmethod
    def read(cls, path: Path) -> RunVocab:
        """The vocabulary in ``path``; a damaged or incomplete file is named."""
        data = fsutil.read_json(path)
        try:
            return cls(
                discovery_stamp=str(data["discovery_stamp"]),
                images_hash=str(data.get("images_hash", "")),
                category=str(data.get("category", "")),
                parts=[
                    VocabPart(
                        index=int(p["index"]),
                        is_background=bool(p["is_background"]),
                        name=str(p.get("name", "")),
                        subconcepts=int(p["subconcepts"]),
                        token=str(p.get("token", "")),
                        token_id=int(p["token_id"]),
                    )
                    for p in data["parts"]
                ],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise fsutil.damaged(
                path, f"no valid part list ({type(err).__name__}: {err})"
            ) from None


@dataclass(frozen=True)
class RunInfo:
    """What a run's config.toml records: the base model it was fitted on and its settings."""

    base_model: str
    fit: FitConfig
    creaturekit_version: str
    family: str = "sd"  # the base model's family: "sd" (1.x/2.x) or "sdxl"


@dataclass(frozen=True)
class RunFolder:
    """Paths and small I/O of one run."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def mapper(self) -> Path:
        return self.path / MAPPER_FILE

    @property
    def lora(self) -> Path:
        return self.path / LORA_FILE

    def check_new(self) -> None:
        """Refuse to start a fresh run over one that has checkpoints or outputs."""
        if self.mapper.exists() or any(self.checkpoints.glob("step-*")):
            raise CreatureKitError(
                f"The run {self.path.name!r} exists already. Continue it with --resume, or "
                "choose another name with --run NAME."
            )

    def start(
        self, config: FitConfig, vocab: RunVocab, base_model: str, family: str = "sd"
    ) -> None:
        """Begin a fresh run (refused over an existing one, see :meth:`check_new`)."""
        self.check_new()
        self.path.mkdir(parents=True, exist_ok=True)
        fsutil.write_toml(
            self.path / CONFIG_FILE,
            {
                "creaturekit_version": __version__,
                "base_model": base_model,
                "family": family,
                "fit": config_dict(config),
            },
        )
        fsutil.write_json(self.path / VOCAB_FILE, asdict(vocab))
        fsutil.write_text(self.path / LOG_FILE, "")

    def saved_config(self) -> dict[str, Any]:
        path = self.path / CONFIG_FILE
        try:
            with open(path, "rb") as fh:
                saved = tomllib.load(fh)
        except FileNotFoundError:
            raise CreatureKitError(
                f"{path} is missing: {self.path} is not a fit run (or one that never started)."
            ) from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise fsutil.damaged(path, err) from None
        if not isinstance(saved.get("fit"), dict):
            raise fsutil.damaged(path, "no [fit] table")
        return saved

    def saved_fit(self) -> dict[str, Any]:
        """The run's ``[fit]`` settings; those its config.toml lacks (added in a later
        version) count as their defaults."""
        return config_dict(FitConfig()) | self.saved_config()["fit"]

    def info(self) -> RunInfo:
        """The run's base model and settings, checked (a damaged config.toml is named)."""
        saved = self.saved_config()
        path = self.path / CONFIG_FILE
        try:
            fit = config_from_dict(self.saved_fit())
        except ConfigError as err:
            raise fsutil.damaged(path, err) from None
        if not isinstance(saved.get("base_model"), str) or not saved["base_model"]:
            raise fsutil.damaged(path, "no base_model")
        version = str(saved.get("creaturekit_version", "unknown"))
        family = saved.get("family", "sd")  # runs before SDXL support were all SD 1.x/2.x
        if family not in FAMILIES.values():
            raise fsutil.damaged(path, f"an unknown base-model family {family!r}")
        return RunInfo(
            base_model=saved["base_model"], fit=fit, creaturekit_version=version, family=family
        )

    def resume_config(self, flags: dict[str, Any]) -> FitConfig:
        """The run's own saved settings, changed only by the ``flags`` that are set."""
        saved = self.saved_fit()
        try:
            config_from_dict(saved)
        except ConfigError as err:
            raise ConfigError(f"{self.path / CONFIG_FILE}: {err}") from None
        return config_from_dict(saved | {k: v for k, v in flags.items() if v is not None})

    def check_config(self, config: FitConfig) -> list[str]:
        """Accept ``config`` for resuming this run; return its changes ("steps: 40 -> 80").

        A resumed run keeps the settings that shape its model and data (see
        ``RESUMABLE`` for the others); changes are saved to config.toml.
        """
        saved = self.saved_fit()
        current = config_dict(config)
        changed = sorted(k for k in current if saved.get(k) != current[k])
        fixed = [k for k in changed if k not in RESUMABLE]
        if fixed:
            raise CreatureKitError(
                f"--resume must keep the run's settings; these differ: {', '.join(fixed)} "
                f"(a resumed run may change only {', '.join(sorted(RESUMABLE))}). "
                "Start a new run with --run NAME to train with other settings."
            )
        if changed:
            fsutil.write_toml(self.path / CONFIG_FILE, {**self.saved_config(), "fit": current})
        return [f"{k}: {saved.get(k)} -> {current[k]}" for k in changed]

    def log(self, row: dict[str, Any]) -> None:
        """Append one line to ``log.jsonl``."""
        with open(self.path / LOG_FILE, "a", encoding="utf-8") as fh:
            fh.write(fsutil.json_text(row) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        path = self.path / LOG_FILE
        return fsutil.read_jsonl(path) if path.is_file() else []

    def truncate_log(self, step: int) -> None:
        """Drop log lines after ``step`` (the resumed checkpoint)."""
        fsutil.write_jsonl(
            self.path / LOG_FILE, [r for r in self.read_log() if r.get("step", 0) <= step]
        )

    def vocab(self) -> RunVocab:
        """The run's part vocabulary (a damaged vocab.json is named)."""
        return RunVocab.read(self.path / VOCAB_FILE)


def write_lora(path: Path, layers: dict[str, Any], adapter: Any) -> None:
    """Write a run's LoRA atomically in diffusers format: ``layers`` (diffusers keys without
    the ``unet.`` prefix) and the peft ``adapter`` config as the file's adapter metadata
    (rank and alpha, which ``load_lora_weights`` reads)."""
    from diffusers import StableDiffusionPipeline
    from safetensors import SafetensorError

    with fsutil.atomic_path(path) as tmp:  # umask file mode, atomic
        try:
            StableDiffusionPipeline.save_lora_weights(
                tmp.parent,
                unet_lora_layers=layers,
                weight_name=tmp.name,
                safe_serialization=True,
                unet_lora_adapter_metadata=adapter.to_dict(),
            )
        except SafetensorError as err:  # a full disk among them
            raise fsutil.write_error(err, path) from err


def run_folder(project: Project, name: str) -> RunFolder:
    """The run ``name`` of ``project`` (a plain folder name under ``runs/``, else refused)."""
    return RunFolder(project.runs_dir / check_name(name, "Run name"))


def list_runs(project: Project) -> list[RunFolder]:
    """The project's runs, by name: folders of ``runs/`` with a config.toml (not ``.cache``)."""
    if not project.runs_dir.is_dir():
        return []
    return [
        RunFolder(p)
        for p in sorted(project.runs_dir.iterdir())
        if not p.name.startswith(".") and (p / CONFIG_FILE).is_file()
    ]
