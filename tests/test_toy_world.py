"""Toy world: catalogue, species and novel split, and the drawing with its masks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from creaturekit.toy.draw import render
from creaturekit.toy.figure import LABEL_WIDTH, world_figure
from creaturekit.toy.world import (
    COLOURS,
    N_VARIANTS,
    PARTS,
    SCENES,
    ToyWorldError,
    is_novel,
    make_world,
    variant,
)


def test_catalogue_has_distinct_described_variants() -> None:
    assert len(PARTS) >= 4 and len(SCENES) >= 6
    for part in PARTS:
        looks = [variant(part, i) for i in range(N_VARIANTS)]
        assert len({v.describe(part) for v in looks}) == N_VARIANTS
        assert len({v.colour for v in looks}) == N_VARIANTS
        assert all(v.describe(part).endswith(part) for v in looks)


def test_world_is_deterministic_and_balanced() -> None:
    world = make_world(24, seed=3)
    assert world == make_world(24, seed=3)
    assert world != make_world(24, seed=4)
    assert len(set(world.species)) == 24
    for p in range(len(PARTS)):
        counts = np.bincount([s[p] for s in world.species], minlength=N_VARIANTS)
        assert counts.min() >= 2 and counts.max() <= 3


@pytest.mark.parametrize("n_species", [5, 24, 40])
def test_novel_combinations_never_meet_in_a_species(n_species: int) -> None:
    world = make_world(n_species, n_novel=8, seed=1)
    assert len(set(world.novel)) == 8
    for combo in world.novel:
        assert combo not in world.species
        for species in world.species:
            for a, b in itertools.combinations(range(len(PARTS)), 2):
                assert (combo[a], combo[b]) != (species[a], species[b])
        assert is_novel(combo, world.species)
    assert not any(is_novel(s, world.species) for s in world.species)


def test_world_rejects_bad_counts() -> None:
    with pytest.raises(ToyWorldError, match="5 to 48 species"):
        make_world(4)
    with pytest.raises(ToyWorldError, match="novel combinations"):
        make_world(48, n_novel=100_000)


def test_world_round_trips_through_json() -> None:
    world = make_world(6, n_novel=4, seed=2)
    assert type(world).from_dict(world.to_dict()) == world


def test_same_generator_state_gives_same_pixels() -> None:
    a = render((1, 2, 3, 4), 5, 64, np.random.default_rng(7))
    b = render((1, 2, 3, 4), 5, 64, np.random.default_rng(7))
    c = render((1, 2, 3, 4), 5, 64, np.random.default_rng(8))
    assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    assert a.image.tobytes() != c.image.tobytes()


def _allowed_colours(rgb: tuple[int, int, int]) -> set[tuple[int, ...]]:
    base = np.asarray(rgb, np.float32)
    shades = [base, base + 95.0 if base.mean() < 80 else base * 0.55]
    return {tuple(np.clip(np.rint(c * f), 0, 255).astype(int)) for c in shades for f in (1.0, 0.45)}


@pytest.mark.parametrize("seed", range(12))
def test_masks_match_the_drawing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    combo = tuple(int(v) for v in rng.integers(0, N_VARIANTS, len(PARTS)))
    size = (32, 64, 128)[seed % 3]
    d = render(combo, seed % len(SCENES), size, rng, noise=0.0)
    assert d.image.shape == (size, size, 3) and d.mask.shape == (size, size)
    assert d.mask.dtype == np.uint8 and d.mask.max() <= len(PARTS)
    eye = _allowed_colours((20, 20, 25))
    for i, part in enumerate(PARTS):
        where = d.mask == i + 1
        allowed = _allowed_colours(COLOURS[variant(part, combo[i]).colour])
        if part == "head":
            allowed |= eye
        pixels = {tuple(int(x) for x in px) for px in d.image[where]}
        assert pixels <= allowed, part
        if d.visible[i]:
            assert where.any()


def test_captions_and_figure() -> None:
    world = make_world(6, n_novel=4, seed=2)
    combo = world.species[0]
    words = world.describe(combo)
    assert all(variant(p, v).describe(p) in words for p, v in zip(PARTS, combo, strict=True))
    sheet = world_figure(world, size=32, species=2, novel=1, per_row=2)
    assert sheet.size == (LABEL_WIDTH + 4 * 32, 3 * 32)
