"""Part tokens in a tokenizer, and the swap of their input embeddings.

Each part gets one pseudo-word (``<part_0>``, ...). When a prompt is encoded, the input
embedding of every part-token occurrence is replaced by the mapper's vector for the
(part, code) requested there, before the frozen text transformer runs
(:mod:`creaturekit.conditioning.text`). The swap is a forward hook on the encoder's
input-embedding layer, so it works for any text encoder that exposes
``get_input_embeddings()`` (CLIP in SD 1.x, OpenCLIP in SD 2.x and SDXL).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from creaturekit.errors import CreatureKitError

PART_TOKEN = "<part_{}>"


def tokenize(tokenizer: Any, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's maximum length (77 for CLIP)."""
    return tokenizer(
        list(prompts),
        padding="max_length",
        truncation=True,
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids


def part_token(part: int) -> str:
    """The pseudo-word of part ``part``."""
    return PART_TOKEN.format(part)


def add_part_tokens(tokenizer: Any, text_encoder: Any, num_parts: int) -> list[int]:
    """Add one token per part (once) and grow the embedding table; return their ids.

    Raises when a part token would not be a single, new token.
    """
    tokens = [part_token(i) for i in range(num_parts)]
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing and len(missing) != len(tokens):
        raise CreatureKitError("The tokenizer already holds some but not all part tokens.")
    if missing:
        added = tokenizer.add_tokens(missing)
        if added != len(missing):
            raise CreatureKitError("The part tokens clash with words the tokenizer knows.")
        # the new rows are never read (the mapper's vectors replace them), so skip
        # transformers' mean/covariance initialisation and its message
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    for token, token_id in zip(tokens, ids, strict=True):
        if tokenizer.encode(token, add_special_tokens=False) != [token_id]:
            raise CreatureKitError(f"The part token {token} is not a single token.")
    return list(ids)


def locate_part_tokens(
    input_ids: torch.Tensor, part_token_ids: Sequence[int]
) -> list[list[tuple[int, int]]]:
    """Per prompt, the (position, part) of each part-token occurrence, in order."""
    lookup = {tid: part for part, tid in enumerate(part_token_ids)}
    out = []
    for row in input_ids.tolist():
        out.append([(pos, lookup[t]) for pos, t in enumerate(row) if t in lookup])
    return out


@contextlib.contextmanager
def swapped_embeddings(
    text_encoder: Any, replacements: torch.Tensor, where: torch.Tensor
) -> Iterator[None]:
    """Within the block, input embeddings at ``where`` (B, L bool) become ``replacements``.

    ``replacements`` is (N, dim) for the N true entries of ``where``, in row-major order.
    """

    def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        out = output.clone()
        out[where.to(out.device)] = replacements.to(out.device, out.dtype)
        return out

    handle = text_encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
