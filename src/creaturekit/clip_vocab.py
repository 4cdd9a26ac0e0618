"""The real CLIP BPE tokenizer, built offline from the vocabulary open-clip-torch ships.

Stable Diffusion 1.x uses OpenAI's CLIP tokenizer: 256 byte symbols, the same with an
end-of-word mark, 48,894 merges, then ``<|startoftext|>`` and ``<|endoftext|>`` (49,408
tokens). open-clip-torch ships those merges (``bpe_simple_vocab_16e6.txt.gz``), so the
identical tokenizer can be rebuilt without the model hub.
"""

from __future__ import annotations

import gzip
from importlib.resources import files
from typing import Any

CLIP_MERGES = 49152 - 256 - 2  # the merges CLIP uses from the file


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def clip_merges(limit: int | None = None) -> list[tuple[str, str]]:
    """The first ``limit`` (default: all CLIP uses) BPE merges from open-clip-torch's file."""
    path = files("open_clip").joinpath("bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    count = CLIP_MERGES if limit is None else min(limit, CLIP_MERGES)
    return [tuple(line.split()) for line in lines[1 : count + 1]]  # type: ignore[misc]


def clip_tokenizer(num_merges: int | None = None, model_max_length: int = 77) -> Any:
    """A ``CLIPTokenizer`` identical to Stable Diffusion's (fewer merges for tiny tests)."""
    from transformers import CLIPTokenizer

    merges = clip_merges(num_merges)
    symbols = list(bytes_to_unicode().values())
    tokens = [
        *symbols,
        *(s + "</w>" for s in symbols),
        *("".join(m) for m in merges),
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    vocab = {token: i for i, token in enumerate(tokens)}
    # The tokenizers backend takes merge pairs (its type hint says strings).
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)  # type: ignore[arg-type]
