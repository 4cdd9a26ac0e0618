"""Part tokens in the tokenizer, and prompt encoding with mapper embeddings swapped in.

Each part gets one pseudo-word (``<part_0>``, ...). When a prompt is encoded, the input
embedding of every part-token occurrence is replaced by the mapper's vector for the
(part, code) requested there, before the frozen text transformer runs. The swap is a
forward hook on the encoder's input-embedding layer, so it works for any text encoder
that exposes ``get_input_embeddings()`` (CLIP in SD 1.x, OpenCLIP-H in SD 2.x).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from creaturekit.conditioning.mapper import TokenMapper
from creaturekit.errors import CreatureKitError

PART_TOKEN = "<part_{}>"


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
        out[where.to(out.device)] = replacements.to(out.dtype)
        return out

    handle = text_encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def encode_with_parts(
    text_encoder: Any,
    input_ids: torch.Tensor,
    part_token_ids: Sequence[int],
    codes: Sequence[Sequence[int]],
    mapper: TokenMapper,
) -> tuple[torch.Tensor, list[list[tuple[int, int]]]]:
    """Encode ``input_ids`` with each part token's embedding computed by ``mapper``.

    ``codes[b]`` lists the code of each part-token occurrence of prompt ``b`` in order
    (a part may occur twice, e.g. to blend two sub-concepts). Returns the encoder's
    hidden states and the located (position, part) occurrences.
    """
    found = locate_part_tokens(input_ids, part_token_ids)
    parts, flat_codes = [], []
    where = torch.zeros(input_ids.shape, dtype=torch.bool)
    for b, occurrences in enumerate(found):
        if len(occurrences) != len(codes[b]):
            raise CreatureKitError(
                f"Prompt {b} has {len(occurrences)} part tokens but {len(codes[b])} codes."
            )
        for (pos, part), code in zip(occurrences, codes[b], strict=True):
            where[b, pos] = True
            parts.append(part)
            flat_codes.append(code)
    device = next(mapper.parameters()).device
    vectors = mapper(
        torch.tensor(parts, dtype=torch.long, device=device),
        torch.tensor(flat_codes, dtype=torch.long, device=device),
    )
    with swapped_embeddings(text_encoder, vectors, where):
        hidden = text_encoder(input_ids.to(text_encoder.device))[0]
    return hidden, found
