"""What the UNet is conditioned on: prompts with part tokens -> text embeddings.

:class:`TextConditioning` holds a base model's tokenizers and text encoders and knows both
families: SD 1.x/2.x (the one CLIP encoder's last hidden states) and SDXL (both encoders'
penultimate hidden states side by side, the second encoder's pooled output, and the
size/crop "time ids"), as diffusers' own pipelines compute them. Training, sampling,
``mix`` and the exports all go through it, so no call site knows the family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from creaturekit.conditioning.base_model import BaseModel
from creaturekit.conditioning.tokens import (
    add_part_tokens,
    locate_part_tokens,
    swapped_embeddings,
    tokenize,
)
from creaturekit.errors import CreatureKitError

Occurrences = list[list[tuple[int, int]]]


@dataclass
class PromptEmbeddings:
    """The conditioning of a batch of prompts."""

    hidden: torch.Tensor  # (B, 77, width): the UNet's cross-attention context
    pooled: torch.Tensor | None  # (B, pooled width): SDXL's pooled text embedding
    found: Occurrences  # per prompt, the (position, part) of each part-token occurrence


class TextConditioning:
    """A base model's tokenizers and text encoders, and how prompts become embeddings."""

    def __init__(
        self,
        family: str,
        tokenizers: Sequence[Any],
        text_encoders: Sequence[Any],
        zeros_for_empty_prompt: bool = False,
    ) -> None:
        self.family = family
        self.tokenizers = tuple(tokenizers)
        self.text_encoders = tuple(text_encoders)
        self.zeros_for_empty_prompt = zeros_for_empty_prompt
        self.part_token_ids: tuple[list[int], ...] = tuple([] for _ in self.tokenizers)

    @classmethod
    def of(cls, base: BaseModel) -> TextConditioning:
        """The conditioning of a loaded base model (sharing its modules)."""
        return cls(base.family, base.tokenizers, base.text_encoders, base.zeros_for_empty_prompt)

    @property
    def widths(self) -> tuple[int, ...]:
        """Each text encoder's embedding width."""
        return tuple(int(e.config.hidden_size) for e in self.text_encoders)

    @property
    def mapper_split(self) -> tuple[int, ...]:
        """The token mapper's ``split`` for these encoders (``()`` for one)."""
        return self.widths if len(self.widths) > 1 else ()

    def add_part_tokens(self, num_parts: int) -> list[int]:
        """Add the part tokens to every tokenizer (once); return the first one's ids."""
        self.part_token_ids = tuple(
            add_part_tokens(t, e, num_parts)
            for t, e in zip(self.tokenizers, self.text_encoders, strict=True)
        )
        return self.part_token_ids[0]

    def tokenize(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        """Each tokenizer's padded token ids of ``prompts``."""
        return [tokenize(t, prompts) for t in self.tokenizers]

    def encode(
        self,
        prompts: Sequence[str],
        codes: Sequence[Sequence[int]] | None = None,
        mapper: Any = None,
    ) -> PromptEmbeddings:
        """Embeddings of ``prompts`` whose part tokens carry ``codes`` (mapped by ``mapper``).

        ``codes[b]`` lists the code of each part-token occurrence of prompt ``b`` in order
        (a part may occur twice, e.g. to blend two sub-concepts). Gradients flow to
        ``mapper`` (wrap in ``torch.no_grad()`` to generate).
        """
        ids = self.tokenize(prompts)
        found = locate_part_tokens(ids[0], self.part_token_ids[0])
        for more, part_ids in zip(ids[1:], self.part_token_ids[1:], strict=True):
            if locate_part_tokens(more, part_ids) != found:
                raise CreatureKitError("The base model's tokenizers split the prompt differently.")
        where, vectors = self._part_vectors(found, ids[0].shape, codes, mapper)
        hidden, pooled, sdxl = [], None, self.family == "sdxl"
        for i, (encoder, input_ids) in enumerate(zip(self.text_encoders, ids, strict=True)):
            with swapped_embeddings(encoder, vectors[i], where):
                out = encoder(input_ids.to(encoder.device), output_hidden_states=sdxl)
            if sdxl:  # as diffusers' SDXL pipelines (clip_skip None)
                hidden.append(out.hidden_states[-2])
                pooled = out[0]  # the last encoder's projected pooled output
            else:
                hidden.append(out[0])
        return PromptEmbeddings(hidden=torch.cat(hidden, dim=-1), pooled=pooled, found=found)

    def _part_vectors(
        self,
        found: Occurrences,
        shape: torch.Size,
        codes: Sequence[Sequence[int]] | None,
        mapper: Any,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Where the part tokens are (B, L bool) and each encoder's share of their vectors."""
        where = torch.zeros(shape, dtype=torch.bool)
        parts, flat_codes = [], []
        codes = codes if codes is not None else [[] for _ in found]
        for b, occurrences in enumerate(found):
            if len(occurrences) != len(codes[b]):
                raise CreatureKitError(
                    f"Prompt {b} has {len(occurrences)} part tokens but {len(codes[b])} codes."
                )
            for (pos, part), code in zip(occurrences, codes[b], strict=True):
                where[b, pos] = True
                parts.append(part)
                flat_codes.append(code)
        if not parts:
            return where, [torch.zeros(0, w) for w in self.widths]
        device = next(mapper.parameters()).device
        vectors = mapper(
            torch.tensor(parts, dtype=torch.long, device=device),
            torch.tensor(flat_codes, dtype=torch.long, device=device),
        )
        return where, list(vectors.split(list(self.widths), dim=-1))

    def negative(self, text: str) -> PromptEmbeddings:
        """The negative prompt's embeddings (SDXL: zeros for "", as diffusers)."""
        embeds = self.encode([text])
        if not text and self.zeros_for_empty_prompt:
            embeds.hidden = torch.zeros_like(embeds.hidden)
            embeds.pooled = None if embeds.pooled is None else torch.zeros_like(embeds.pooled)
        return embeds

    def unet_inputs(
        self, embeds: PromptEmbeddings, original_sizes: Sequence[tuple[int, int]], side: int
    ) -> dict[str, Any]:
        """Keyword arguments of the UNet's forward for ``embeds``: the context and, for SDXL,
        the pooled text and the size conditioning of images of ``original_sizes`` (h, w)
        squashed to ``side`` x ``side`` without a crop (diffusers' SDXL LoRA training)."""
        inputs: dict[str, Any] = {"encoder_hidden_states": embeds.hidden}
        if self.family == "sdxl":
            time_ids = torch.tensor(
                [[h, w, 0, 0, side, side] for h, w in original_sizes],
                dtype=embeds.hidden.dtype,
                device=embeds.hidden.device,
            )
            inputs["added_cond_kwargs"] = {"text_embeds": embeds.pooled, "time_ids": time_ids}
        return inputs
