"""Part requests by name: ``--head 42`` or ``<head:42>`` in a prompt, checked against a run.

Names come from the project's settings (``parts name 2 head``), so renaming a part
after fitting works; codes are checked against the run's vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from creaturekit.config import Config
from creaturekit.errors import CreatureKitError
from creaturekit.training.text import part_token

PROMPT_PART = re.compile(r"<([A-Za-z_]\w*):(-?\d+)>")


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

    def __init__(self, vocab: dict[str, Any], config: Config) -> None:
        self.parts = vocab["parts"]
        self.category = config.project.category
        self.by_name = {
            config.part_name(p["index"], p["is_background"]): i for i, p in enumerate(self.parts)
        }
        #: discovery part index -> name
        self.by_index = {int(self.parts[i]["index"]): name for name, i in self.by_name.items()}

    def describe(self) -> str:
        """``head (0-255), wing (0-255), bg (0-63)``."""
        return ", ".join(
            f"{name} (0-{self.parts[i]['subconcepts'] - 1})" for name, i in self.by_name.items()
        )

    def request(self, name: str, code: int) -> PartRequest:
        """Validate one request."""
        if name not in self.by_name:
            raise PartRequestError(f"Unknown part {name!r}; this run's parts: {self.describe()}.")
        token = self.by_name[name]
        k = int(self.parts[token]["subconcepts"])
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
    if not prompt.strip():
        raise PartRequestError("The prompt is empty.")
    return prompt, requests


def compose_prompt(requests: list[PartRequest], template: str, category: str) -> str:
    """Part tokens in a template such as ``a photo of a {parts} {category}``."""
    if not requests:
        raise PartRequestError("Give at least one part, e.g. --head 42, or a prompt.")
    tokens = " ".join(part_token(r.token) for r in requests)
    return template.format(parts=tokens, category=category)
