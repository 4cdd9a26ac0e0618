"""Part requests by name: ``--head 42`` or ``<head:42>`` in a prompt, checked against a run.

Names come from the project's settings (``parts name 2 head``), so renaming a part
after fitting works; codes are checked against the run's vocabulary.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from creaturekit.conditioning.tokens import part_token
from creaturekit.config import Config, fill_template
from creaturekit.errors import CreatureKitError
from creaturekit.training.run import RunVocab

PROMPT_PART = re.compile(r"<([A-Za-z_]\w*):(-?\d+)>")
#: What is left of a malformed part request once the valid ones are replaced: ``<head:>``
MALFORMED_PART = re.compile(r"<[^<>:]*:[^<>]*>")


class PartRequestError(CreatureKitError):
    """An unknown part name or an out-of-range code."""


@dataclass(frozen=True)
class PartRequest:
    """One requested (part, code): ``token`` is the part's position in the run's vocabulary."""

    name: str
    token: int
    code: int


class Vocabulary:
    """The part vocabulary of a run, addressed by the project's part names."""

    def __init__(self, vocab: RunVocab, config: Config) -> None:
        self.parts = vocab.parts
        self.category = config.project.category
        self.by_name = {
            config.part_name(p.index, p.is_background): i for i, p in enumerate(self.parts)
        }
        #: discovery part index -> name
        self.by_index = {self.parts[i].index: name for name, i in self.by_name.items()}

    def describe(self) -> str:
        """``head (0-255), wing (0-255), bg (0-63)``."""
        return ", ".join(
            f"{name} (0-{self.parts[i].subconcepts - 1})" for name, i in self.by_name.items()
        )

    def example(self) -> str:
        """A valid request, for messages: ``head:0``."""
        return f"{next(iter(self.by_name), 'head')}:0"

    def request(self, name: str, code: int) -> PartRequest:
        """Validate one request."""
        if name not in self.by_name:
            raise PartRequestError(f"Unknown part {name!r}; this run's parts: {self.describe()}.")
        token = self.by_name[name]
        k = self.parts[token].subconcepts
        if not 0 <= code < k:
            raise PartRequestError(f"Code {code} is out of range for {name!r}: use 0 to {k - 1}.")
        return PartRequest(name=name, token=token, code=code)


def parse_prompt(text: str, vocab: Vocabulary) -> tuple[str, list[PartRequest]]:
    """Replace every ``<name:code>`` by the part's token; return the prompt and requests."""
    requests: list[PartRequest] = []

    def swap(match: re.Match[str]) -> str:
        requests.append(vocab.request(match.group(1), int(match.group(2))))
        return part_token(requests[-1].token)

    prompt = PROMPT_PART.sub(swap, text)
    if bad := MALFORMED_PART.search(prompt):
        raise PartRequestError(
            f"{bad.group(0)!r} in the prompt is not a part request; write <NAME:CODE> with a "
            f"whole-number code, e.g. <{vocab.example()}>."
        )
    if not prompt.strip():
        raise PartRequestError("The prompt is empty.")
    return prompt, requests


#: Seeds are 64-bit in torch's generators; ``seed + n`` must stay below this.
MAX_SEED = 2**63


def check_generation(
    *,
    seed: int | None = None,
    n: int = 1,
    steps: int | None = None,
    guidance: float | None = None,
    size: int | None = None,
) -> None:
    """Refuse generation settings no pipeline can use (given ones only), before any work."""
    if seed is not None and not 0 <= seed <= MAX_SEED - n:
        raise PartRequestError(f"--seed must be a whole number from 0 to {MAX_SEED - n}.")
    if n < 1 or (steps is not None and steps < 1):
        raise PartRequestError("--n and --steps must be at least 1.")
    if guidance is not None and not (math.isfinite(guidance) and guidance >= 0):
        raise PartRequestError(f"--guidance must be a finite number >= 0, got {guidance}.")
    if size is not None and (size < 8 or size % 8):
        raise PartRequestError(f"--size must be a multiple of 8 (at least 8), got {size}.")


def compose_prompt(requests: list[PartRequest], template: str, category: str) -> str:
    """Part tokens in a template such as ``a photo of a {parts} {category}``."""
    if not requests:
        raise PartRequestError("Give at least one part, e.g. --head 42, or a prompt.")
    return fill_template(template, " ".join(part_token(r.token) for r in requests), category)
