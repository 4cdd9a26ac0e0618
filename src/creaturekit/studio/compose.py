"""What the compose form asks for: a :class:`ComposeRequest`, checked field by field, and
the ``creaturekit mix`` command that makes the same images.

Parts use ``mix``'s own shape (:func:`creaturekit.generation.mix.sweep`): each part
maps to occurrences, each a list of alternative codes, so ``{"head": [[1], [2]]}`` blends
and ``{"wing": [[1, 2]]}`` sweeps. Parts in ``random`` get a code drawn when the request
runs; the command shows the code drawn.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from creaturekit.errors import CreatureKitError

#: Images one request may ask for (combinations x n): a click, not a batch job.
MAX_IMAGES = 64


class ComposeRequestError(CreatureKitError):
    """A compose request the page (or a script) sent with a missing or ill-typed field."""


@dataclass
class ComposeRequest:
    """One click of "Generate"."""

    parts: dict[str, list[list[int]]] = field(default_factory=dict)
    random: list[str] = field(default_factory=list)
    prompt: str | None = None
    like: int | None = None
    n: int = 1
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    negative: str | None = None
    run: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> ComposeRequest:
        """Validate the JSON body of ``POST /api/generate``."""
        if not isinstance(data, dict):
            raise ComposeRequestError("The request must be a JSON object.")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ComposeRequestError(f"Unknown field(s): {', '.join(map(str, unknown))}.")
        parts = data.get("parts") or {}
        if not isinstance(parts, dict) or not all(
            isinstance(name, str)
            and isinstance(occurrences, list)
            and all(
                isinstance(alts, list) and alts and all(_is_int(c) for c in alts)
                for alts in occurrences
            )
            for name, occurrences in parts.items()
        ):
            raise ComposeRequestError(
                'parts must map part names to lists of code lists, e.g. {"head": [[3]]}.'
            )
        chosen = data.get("random") or []
        if not isinstance(chosen, list) or not all(isinstance(n, str) for n in chosen):
            raise ComposeRequestError("random must be a list of part names.")
        request = cls(
            parts={k: [list(a) for a in v if a] for k, v in parts.items() if v},
            random=list(dict.fromkeys(chosen)),
            prompt=_text(data, "prompt"),
            like=_integer(data, "like"),
            n=_integer(data, "n") or 1,
            seed=_integer(data, "seed") or 0,
            steps=_integer(data, "steps"),
            guidance=_number(data, "guidance"),
            negative=_text(data, "negative", strip=False),
            run=_text(data, "run"),
        )
        images = request.n * math.prod(len(a) for v in request.parts.values() for a in v)
        if images > MAX_IMAGES:
            raise ComposeRequestError(
                f"That asks for {images} images; the studio makes at most {MAX_IMAGES} per "
                "click (use `creaturekit mix` for more)."
            )
        if not request.parts and not request.random and not request.prompt and request.like is None:
            raise ComposeRequestError("Pick at least one part, a training image or a prompt.")
        return request

    def command(self, project: Path, parts: dict[str, list[list[int]]], run: str) -> str:
        """The ``creaturekit mix`` command making the same images, with ``parts`` as drawn."""
        words = ["creaturekit", "mix", "-C", str(project)]
        for name, occurrences in parts.items():
            for alternatives in occurrences:
                words += [f"--{name}", ",".join(map(str, alternatives))]
        if self.like is not None:
            words += ["--like", str(self.like)]
        words += ["--seed", str(self.seed)]
        if self.n != 1:
            words += ["--n", str(self.n)]
        if self.steps is not None:
            words += ["--steps", str(self.steps)]
        if self.guidance is not None:
            words += ["--guidance", repr(self.guidance)]
        if self.negative is not None:
            words += ["--negative", self.negative]
        words += ["--run", run]
        if self.prompt:
            words.append(self.prompt)
        return shlex.join(words)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not _is_int(value):
        raise ComposeRequestError(f"{key} must be a whole number, got {str(value)[:40]!r}.")
    return int(value)


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ComposeRequestError(f"{key} must be a number, got {str(value)[:40]!r}.")
    return number


def _text(data: dict[str, Any], key: str, strip: bool = True) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ComposeRequestError(f"{key} must be text.")
    value = value.strip() if strip else value
    return value or None if strip else value
