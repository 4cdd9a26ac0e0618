"""A run folder ``runs/<name>/``: file names shared by the trainer and by readers.

config.toml                  the resolved FitConfig + base model + creaturekit version
vocab.json                   the part vocabulary (tokens, names, K per part, discovery stamp)
log.jsonl                    one line per logged step: step, losses, lr, seconds
samples/step-000500.png      sample images from fixed seeds and prompts
checkpoints/step-000250/     resumable state (see training/checkpoint.py)
mapper.safetensors           the trained token mapper (config in its metadata)
pytorch_lora_weights.safetensors   the LoRA, diffusers format (pipe.load_lora_weights)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creaturekit import __version__, fsutil
from creaturekit.errors import CreatureKitError
from creaturekit.training.config import FitConfig, config_dict

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

    def start(self, config: FitConfig, vocab: dict[str, Any], base_model: str) -> None:
        """Begin a fresh run: refuse to overwrite one that has checkpoints or outputs."""
        if self.mapper.exists() or any(self.checkpoints.glob("step-*")):
            raise CreatureKitError(
                f"The run {self.path.name!r} exists already. Continue it with --resume, or "
                "choose another name with --run NAME."
            )
        self.path.mkdir(parents=True, exist_ok=True)
        fsutil.write_toml(
            self.path / CONFIG_FILE,
            {
                "creaturekit_version": __version__,
                "base_model": base_model,
                "fit": config_dict(config),
            },
        )
        fsutil.write_json(self.path / VOCAB_FILE, vocab)
        fsutil.write_text(self.path / LOG_FILE, "")

    def saved_config(self) -> dict[str, Any]:
        with open(self.path / CONFIG_FILE, "rb") as fh:
            return tomllib.load(fh)

    def check_config(self, config: FitConfig) -> None:
        """A resumed run must keep its hyper-parameters (``steps`` may grow). Settings a
        run's config.toml lacks (added in a later version) count as their defaults."""
        saved = config_dict(FitConfig()) | dict(self.saved_config()["fit"])
        current = config_dict(config)
        changed = sorted(k for k in current if k != "steps" and saved.get(k) != current[k])
        if changed:
            raise CreatureKitError(
                f"--resume must keep the run's settings; these differ: {', '.join(changed)}."
            )
        if saved.get("steps") != current["steps"]:
            fsutil.write_toml(self.path / CONFIG_FILE, {**self.saved_config(), "fit": current})

    def log(self, row: dict[str, Any]) -> None:
        """Append one line to ``log.jsonl``."""
        with open(self.path / LOG_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        path = self.path / LOG_FILE
        return fsutil.read_jsonl(path) if path.is_file() else []

    def truncate_log(self, step: int) -> None:
        """Drop log lines after ``step`` (the resumed checkpoint)."""
        fsutil.write_jsonl(
            self.path / LOG_FILE, [r for r in self.read_log() if r.get("step", 0) <= step]
        )

    def vocab(self) -> dict[str, Any]:
        return json.loads((self.path / VOCAB_FILE).read_text(encoding="utf-8"))
