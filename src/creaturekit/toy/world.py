"""The toy world's catalogue: parts, their variants, scenes, species and novel combinations.

A species is a fixed combination of one variant per part (like a bird species in CUB),
so part variants are correlated within species. Novel combinations are held out for
judging mixes: no two of their part variants ever appear together in any species.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from creaturekit.errors import CreatureKitError

PARTS: tuple[str, ...] = ("head", "body", "wings", "tail")
"""Foreground parts in mask order: part ``i`` has mask value ``i + 1`` (0 is background)."""

SHAPES: dict[str, tuple[str, ...]] = {
    "head": ("round", "square", "pointed", "crested"),
    "body": ("oval", "round", "slender", "boxy"),
    "wings": ("pointed", "round", "long", "fanned"),
    "tail": ("fan", "thin", "forked", "tufted"),
}
PATTERNS: dict[str, tuple[str, str]] = {
    "head": ("plain", "striped"),
    "body": ("plain", "spotted"),
    "wings": ("plain", "striped"),
    "tail": ("plain", "banded"),
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 40, 40),
    "orange": (247, 127, 0),
    "yellow": (252, 211, 40),
    "lime": (160, 220, 50),
    "green": (30, 150, 70),
    "teal": (20, 170, 170),
    "blue": (40, 90, 220),
    "purple": (130, 60, 190),
    "pink": (240, 120, 190),
    "white": (245, 245, 240),
    "black": (35, 35, 40),
    "brown": (140, 85, 40),
}
PART_COLOURS: dict[str, tuple[str, ...]] = {
    "head": ("red", "blue", "yellow", "green", "white", "purple", "orange", "teal"),
    "body": ("brown", "yellow", "blue", "pink", "orange", "green", "white", "purple"),
    "wings": ("teal", "red", "purple", "white", "black", "orange", "lime", "blue"),
    "tail": ("black", "green", "pink", "red", "blue", "yellow", "brown", "lime"),
}
N_VARIANTS = 8
SCENES: tuple[str, ...] = (
    "blue sky",
    "green meadow",
    "sandy desert",
    "starry night",
    "snowy field",
    "dark forest",
    "rippling water",
    "brick wall",
)
"""Background variants (scene ids index this tuple)."""


class ToyWorldError(CreatureKitError):
    """A toy world cannot be made with the requested settings."""


@dataclass(frozen=True)
class Variant:
    """One variant of a part: a shape, a colour and a pattern."""

    shape: str
    colour: str
    pattern: str

    def describe(self, part: str) -> str:
        """Words for a caption, e.g. "round red head" or "oval brown spotted body"."""
        words = [self.shape, self.colour]
        if self.pattern != "plain":
            words.append(self.pattern)
        return " ".join([*words, part])


def variant(part: str, index: int) -> Variant:
    """Variant ``index`` (in [0, N_VARIANTS)) of ``part``.

    Any two variants of a part differ in colour and in shape or pattern.
    """
    shapes = SHAPES[part]
    return Variant(
        shape=shapes[index % len(shapes)],
        colour=PART_COLOURS[part][index],
        pattern=PATTERNS[part][index // len(shapes)],
    )


@dataclass(frozen=True)
class World:
    """Species and held-out novel combinations of one toy data set."""

    seed: int
    species: tuple[tuple[int, ...], ...]  # one variant id per part, in PARTS order
    novel: tuple[tuple[int, ...], ...]

    def species_name(self, index: int) -> str:
        return f"species-{index:02d}"

    def describe(self, combo: tuple[int, ...]) -> str:
        """Words for a whole creature, e.g. "round red head, oval brown body, ..."."""
        return ", ".join(variant(p, v).describe(p) for p, v in zip(PARTS, combo, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """The catalogue and split as plain data (what ``world.json`` holds)."""
        return {
            "seed": self.seed,
            "parts": list(PARTS),
            "variants": {
                p: [
                    {**asdict(variant(p, i)), "text": variant(p, i).describe(p)}
                    for i in range(N_VARIANTS)
                ]
                for p in PARTS
            },
            "scenes": list(SCENES),
            "species": [
                {"name": self.species_name(i), "variants": dict(zip(PARTS, s, strict=True))}
                for i, s in enumerate(self.species)
            ],
            "novel": [dict(zip(PARTS, c, strict=True)) for c in self.novel],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> World:
        parts = data["parts"]
        return cls(
            seed=data["seed"],
            species=tuple(tuple(s["variants"][p] for p in parts) for s in data["species"]),
            novel=tuple(tuple(c[p] for p in parts) for c in data["novel"]),
        )


def _pairs(combo: tuple[int, ...]) -> set[tuple[int, int, int, int]]:
    return {(a, combo[a], b, combo[b]) for a, b in itertools.combinations(range(len(combo)), 2)}


def seen_pairs(species: tuple[tuple[int, ...], ...]) -> set[tuple[int, int, int, int]]:
    """Every (part a, variant, part b, variant) pair that appears together in a species."""
    return set().union(*(_pairs(combo) for combo in species))


def is_novel(combo: tuple[int, ...], species: tuple[tuple[int, ...], ...]) -> bool:
    """True when no two of ``combo``'s part variants appear together in any species."""
    return not _pairs(combo) & seen_pairs(species)


def make_world(n_species: int = 24, n_novel: int = 32, seed: int = 0) -> World:
    """Draw ``n_species`` distinct species and ``n_novel`` novel combinations.

    Every variant of every part is used by about the same number of species, so each
    one can be learnt; the novel combinations use only variants seen in some species.
    """
    if not 5 <= n_species <= 48:
        raise ToyWorldError(f"The toy world holds 5 to 48 species, not {n_species}.")
    rng = np.random.default_rng([seed, 7])
    reps = -(-n_species // N_VARIANTS)
    for _ in range(1000):
        columns = [rng.permutation(np.tile(np.arange(N_VARIANTS), reps))[:n_species] for _ in PARTS]
        species = tuple(tuple(int(c[i]) for c in columns) for i in range(n_species))
        if len(set(species)) == n_species:
            break
    else:  # pragma: no cover - 1000 draws without a clash are certain in practice
        raise ToyWorldError("Could not draw distinct species; try another seed.")
    used = [sorted({s[p] for s in species}) for p in range(len(PARTS))]
    seen = seen_pairs(species)
    candidates = [c for c in itertools.product(*used) if not _pairs(c) & seen]
    if len(candidates) < n_novel:
        raise ToyWorldError(
            f"Only {len(candidates)} novel combinations exist with {n_species} species; "
            f"ask for fewer species or fewer novel combinations."
        )
    picked = sorted(rng.choice(len(candidates), size=n_novel, replace=False).tolist())
    return World(seed=seed, species=species, novel=tuple(candidates[i] for i in picked))
