"""The token mapper: (part, sub-concept code) -> an input embedding for the part's token.

``embedding = projector(code_embedding[part, code] + part_embedding[part])``. Each part
has ``K_part + 1`` code rows; the last one means "absent". The mapper's shape lives in
its config, saved as safetensors metadata beside the weights, so a mapper is never
loaded with the wrong projector depth. For a base model with two text encoders (SDXL)
one vector holds both encoders' embeddings side by side (``split`` gives their widths).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from creaturekit import fsutil
from creaturekit.errors import CreatureKitError
from creaturekit.version import __version__


@dataclass(frozen=True)
class MapperConfig:
    """Everything needed to rebuild a :class:`TokenMapper` (its constructor arguments)."""

    num_codes: tuple[int, ...]  # K per part, background included
    dim: int  # text encoder width (768 for SD 1.5; the sum of both for SDXL)
    depth: int = 3  # Linear layers in the projector (ReLU between them)
    split: tuple[int, ...] = ()  # per-encoder widths (sum == dim); () for one encoder

    @property
    def widths(self) -> tuple[int, ...]:
        """The width of each text encoder's share of a vector."""
        return self.split or (self.dim,)


class TokenMapper(nn.Module):
    """Code embeddings + part embeddings + an MLP projector.

    ``code_std`` is the standard deviation of the code embeddings at initialisation (a
    fit's ``code_init_std``); it does not matter for a mapper whose weights are loaded.
    """

    def __init__(self, config: MapperConfig, code_std: float = 0.02) -> None:
        super().__init__()
        if config.depth < 1:
            raise ValueError("The projector needs at least one layer.")
        if sum(config.widths) != config.dim:
            raise ValueError(f"The split {config.split} does not add up to the width {config.dim}.")
        self.config = config
        rows = [k + 1 for k in config.num_codes]  # + "absent"
        self.register_buffer("offsets", torch.tensor([0, *rows[:-1]]).cumsum(0), persistent=False)
        self.code_embedding = nn.Embedding(sum(rows), config.dim)
        self.part_embedding = nn.Embedding(len(config.num_codes), config.dim)
        layers: list[nn.Module] = []
        for i in range(config.depth):
            layers.append(nn.Linear(config.dim, config.dim))
            if i < config.depth - 1:
                layers.append(nn.ReLU())
        self.projector = nn.Sequential(*layers)
        nn.init.normal_(self.code_embedding.weight, std=code_std)
        nn.init.normal_(self.part_embedding.weight, std=0.02)

    @property
    def num_parts(self) -> int:
        return len(self.config.num_codes)

    def absent_code(self, part: int) -> int:
        """The code meaning "this part is absent"."""
        return self.config.num_codes[part]

    def forward(self, parts: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Embeddings (N, dim) for N (part, code) pairs; codes may be the absent code."""
        limits = torch.tensor(self.config.num_codes, device=parts.device)[parts]
        if bool(((codes < 0) | (codes > limits)).any()):
            raise IndexError("A code is outside its part's range.")
        offsets: torch.Tensor = self.offsets  # type: ignore[assignment]
        rows = offsets.to(parts.device)[parts] + codes
        return self.projector(self.code_embedding(rows) + self.part_embedding(parts))

    def save(self, path: str | Path, extra: dict[str, str] | None = None) -> None:
        """Write the weights and config (as metadata) to one safetensors file, atomically."""
        metadata = {
            "format": "creaturekit-token-mapper",
            "config": json.dumps(asdict(self.config)),
            "creaturekit_version": __version__,
            **(extra or {}),
        }
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        fsutil.save_safetensors(state, path, metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> TokenMapper:
        """Rebuild a mapper from :meth:`save`'s file (config read from its metadata).

        A damaged file, or weights unlike its config, raise DamagedFileError naming it.
        """
        metadata = fsutil.safetensors_metadata(path)
        if metadata.get("format") != "creaturekit-token-mapper":
            raise CreatureKitError(f"{path} is not a creaturekit token mapper.")
        try:
            raw = json.loads(metadata["config"])
            config = MapperConfig(
                num_codes=tuple(int(k) for k in raw["num_codes"]),
                dim=int(raw["dim"]),
                depth=int(raw["depth"]),
                split=tuple(int(w) for w in raw.get("split", ())),
            )
            mapper = cls(config)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise fsutil.damaged(path, f"no valid config in its metadata: {err}") from None
        try:
            mapper.load_state_dict(fsutil.load_safetensors(path))
        except RuntimeError:
            reason = "its weights do not have the shapes its config gives"
            raise fsutil.damaged(path, reason) from None
        return mapper
