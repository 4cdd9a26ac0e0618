"""The shared discovery core: k-means, the 3-level hierarchy, bad input, keypoint metrics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from creaturekit.discovery import hierarchy
from creaturekit.discovery.errors import DiscoveryDataError
from creaturekit.discovery.features import FeatureCache
from creaturekit.discovery.grouping import default_starts
from creaturekit.discovery.keypoint_scores import keypoint_nmi_ari
from creaturekit.discovery.kmeans import assign, spherical_kmeans

GRID = (6, 6)


def synthetic_features(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images whose border is background and whose centre holds 3 parts with 2 variants each.

    Returns features (n, 36, D), the true part map (36,) (0 = background) and variants (n, 3).
    """
    rng = np.random.default_rng(seed)
    d = 32
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    layout = np.zeros(GRID, np.int64)
    layout[1:3, 1:5], layout[3:5, 1:3], layout[3:5, 3:5] = 1, 2, 3
    variants = rng.integers(0, 2, size=(n, 3))
    feats = np.zeros((n, 36, d), np.float32)
    for i in range(n):
        for p, label in enumerate(layout.ravel()):
            vec = (
                basis[0] * 3 + basis[1 + (i % 3)]
                if label == 0
                else (
                    basis[4 + 2 * label] * 3
                    + basis[5 + 2 * label] * (2 * variants[i, label - 1] - 1)
                )
            )
            feats[i, p] = vec + 0.05 * rng.normal(size=d)
    return feats.astype(np.float16), layout.ravel(), variants


def test_kmeans_is_seeded_and_finds_clear_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:3] * 5
    x = np.concatenate([c + 0.1 * rng.normal(size=(50, 8)) for c in centres]).astype(np.float16)
    c1, l1 = spherical_kmeans(x, 3, seed=1)
    c2, l2 = spherical_kmeans(x, 3, seed=1)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(c1, c2)
    assert len(set(zip(l1, np.repeat([0, 1, 2], 50), strict=True))) == 3
    np.testing.assert_array_equal(assign(x, c1), l1)


def test_hierarchy_finds_foreground_parts_and_variants() -> None:
    feats, layout, variants = synthetic_features()
    params = hierarchy.HierarchyParams(parts=3, subconcepts=2, bg_subconcepts=3, position_weight=0)
    h, coding, report = hierarchy.fit(feats, GRID, params)
    bg = h.n_parts - 1
    assert report.parts[bg].is_background and h.n_parts == 4
    assert ((coding.masks != bg) == (layout > 0)).mean() > 0.98
    assert report.foreground["threshold"] and "rule" in report.foreground
    for part in range(1, 4):
        label = coding.masks[0][layout == part][0]
        assert (coding.masks[:, layout == part] == label).mean() > 0.95
        codes = coding.codes[:, label]
        assert len(set(zip(codes, variants[:, part - 1], strict=True))) == 2  # codes = variants
    again = hierarchy.encode(h, feats, GRID)
    np.testing.assert_array_equal(again.masks, coding.masks)
    np.testing.assert_array_equal(again.codes, coding.codes)


def part_consistency(masks: np.ndarray, layout: np.ndarray) -> float:
    """Lowest share, over true parts, of patches carrying that part's most common label."""
    return min(
        float(
            np.mean(
                masks[:, layout == part] == np.bincount(masks[:, layout == part].ravel()).argmax()
            )
        )
        for part in range(1, 4)
    )


def test_appearance_channels_are_left_out_of_parts_only() -> None:
    feats, layout, _ = synthetic_features(n=40)
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 2, size=(40, 4))  # each part's colour: one of two, shared by parts
    colour[:, 0] = 2  # the background's own colour
    palette = np.array([[12.0, 0, 0], [0, 12.0, 0], [0, 0, 12.0]], np.float32)
    look = np.concatenate([feats, palette[colour[:, layout]].astype(np.float16)], axis=2)
    base = dict(parts=3, subconcepts=2, bg_subconcepts=2, position_weight=0)
    _, by_colour, _ = hierarchy.fit(look, GRID, hierarchy.HierarchyParams(**base))
    params = hierarchy.HierarchyParams(**base, appearance_dims=3)
    h, coding, _ = hierarchy.fit(look, GRID, params)
    assert part_consistency(coding.masks, layout) > 0.95 > part_consistency(by_colour.masks, layout)
    assert h.part_centroids.shape[1] == feats.shape[2] + 2 and h.sub_centroids[0].shape[1] == 35
    label = coding.masks[0][layout == 1][0]
    assert len(set(zip(coding.codes[:, label], colour[:, 1], strict=True))) == 2  # codes = colours
    again = hierarchy.encode(hierarchy.Hierarchy.from_tensors(h.tensors()), look, GRID)
    np.testing.assert_array_equal(again.masks, coding.masks)
    np.testing.assert_array_equal(again.codes, coding.codes)


def facing_creatures(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Creatures on a 5x8 grid, facing right or left at random: columns back end, back
    middle, front middle, front end (when facing right). Both ends LOOK the same (two
    variants of one look); only the middles tell the facing. Returns features
    ``(n, 40, D)`` and each image's true map (0 bg, 1 back end, 2, 3, 4 front end)."""
    rng = np.random.default_rng(seed)
    d = 32
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    layout = np.zeros((5, 8), np.int64)
    layout[1:4, 2:6] = [1, 2, 3, 4]
    maps = np.stack([layout if rng.random() < 0.5 else layout[:, ::-1] for _ in range(n)])
    look = {1: basis[5] * 3, 2: basis[7] * 3, 3: basis[6] * 3, 4: basis[5] * 3}
    feats = np.zeros((n, 40, d), np.float32)
    for i in range(n):
        for p, label in enumerate(maps[i].ravel()):
            vec = basis[0] * 3 + basis[1 + i % 3] if label == 0 else look[label].copy()
            if label in (1, 4):
                vec += basis[8 + label] * rng.choice([-1, 1])  # each end has 2 variants
            feats[i, p] = vec + 0.05 * rng.normal(size=d)
    return feats.astype(np.float16), maps.reshape(n, -1)


def test_facing_tells_same_looking_ends_apart_and_mirrors_consistently() -> None:
    feats, maps = facing_creatures()
    grid = (5, 8)
    fg = maps > 0
    guess = hierarchy.facing_guess(feats, fg, grid)
    right = maps[:, 13] == 4  # row 1, column 5 is the front end
    assert len(set(zip(guess, right, strict=True))) == 2  # one sign per facing
    params = hierarchy.HierarchyParams(parts=4, subconcepts=2, bg_subconcepts=1)
    h, coding, report = hierarchy.fit(feats, grid, params)
    assert h.facing and report.facing["groupings"] >= 1 and report.facing["unsettled"] == 0
    for label in range(1, 5):  # each column is one part in every image, whatever its facing
        assert len(np.unique(coding.masks[maps == label])) == 1
    assert len(np.unique([coding.masks[maps == label][0] for label in range(1, 5)])) == 4
    mirrored = feats.reshape(-1, *grid, feats.shape[-1])[:, :, ::-1].reshape(feats.shape)
    again = hierarchy.encode(hierarchy.Hierarchy.from_tensors(h.tensors()), mirrored, grid)
    np.testing.assert_array_equal(
        again.masks.reshape(-1, *grid), coding.masks.reshape(-1, *grid)[:, :, ::-1]
    )
    np.testing.assert_array_equal(again.codes, coding.codes)


def test_results_saved_before_facing_stay_mirror_invariant() -> None:
    feats, _, _ = synthetic_features()
    params = hierarchy.HierarchyParams(parts=3, subconcepts=2, bg_subconcepts=3)
    h, _, _ = hierarchy.fit(feats, GRID, params)
    old = {k: v for k, v in h.tensors().items() if k != "parts.facing"}
    loaded = hierarchy.Hierarchy.from_tensors(old)
    assert h.facing and not loaded.facing
    fg = np.ones((1, 36), bool)
    placed = hierarchy.with_position(feats[:1], fg, GRID, 1.0)
    assert (placed[:, -1] >= 0).all()  # |dx|
    assert hierarchy.encode(loaded, feats, GRID).masks.shape == (24, 36)


def test_part_means_read_a_part_from_its_interior() -> None:
    """A part with enough interior patches (all four neighbours its own) is averaged over
    those alone, so a boundary patch that sees the neighbour does not blur it; a part
    too thin for an interior keeps all its patches; results saved before the rule keep
    the plain mean."""
    grid = (4, 6)
    masks = np.zeros((1, 24), np.uint8)  # part 0 fills columns 0-4, part 1 is column 5
    masks[0].reshape(grid)[:, 5] = 1
    inner = hierarchy.interior(masks, grid).reshape(grid)
    expected = np.zeros(grid, bool)
    expected[:, :4] = True  # not beside part 1 (the image's edge is no neighbour)
    assert (inner == expected).all()
    feats = np.tile(np.array([1.0, 0.0], np.float32), (1, 24, 1))
    feats[0].reshape(*grid, 2)[:, 4] = [0.0, 1.0]  # the boundary column of part 0 differs
    feats[0].reshape(*grid, 2)[:, 5] = [0.0, 1.0]
    plain, present = hierarchy.part_means(feats, masks, 2)
    means, _ = hierarchy.part_means(feats, masks, 2, grid)
    assert present.all()
    assert np.allclose(plain[0, 0], [0.8, 0.2]) and np.allclose(means[0, 0], [1.0, 0.0])
    assert np.allclose(means[0, 1], [0.0, 1.0])  # no interior: every patch of part 1
    feats3, _, _ = synthetic_features()
    h, _, _ = hierarchy.fit(feats3, GRID, hierarchy.HierarchyParams(parts=3, subconcepts=2))
    old = {k: v for k, v in h.tensors().items() if k != "sub.interior"}
    assert h.interior and not hierarchy.Hierarchy.from_tensors(old).interior


def test_default_starts_spend_a_fixed_budget() -> None:
    assert default_starts(240, 8) == 64  # per-image means of a small set: many cheap starts
    assert default_starts(6_000, 256) == 8  # CUB-scale sub-concepts: the floor
    assert default_starts(512, 8) == 32


def test_self_training_corrects_the_unconfident_part_of_the_first_guess() -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((20, 36), bool)
    truth[:, [14, 15, 20, 21]] = True
    feats = np.where(truth[..., None], np.eye(16)[0] * 3, np.eye(16)[1] * 3)
    feats = (feats + 0.3 * rng.normal(size=feats.shape)).astype(np.float16)
    scores = np.where(truth, 0.1, 0.9) + 0.01 * rng.normal(size=truth.shape)
    guess = truth.copy()
    wrong = rng.choice(truth.size, 40, replace=False)
    guess.flat[wrong] = ~truth.flat[wrong]
    scores.flat[wrong] = 0.5  # errors sit near the threshold: never "confident"
    decision, weights, evidence = hierarchy.self_trained_foreground(feats, scores, guess, 0)
    assert (guess != truth).sum() == 40 and np.array_equal(decision, truth)
    assert weights is not None and weights.shape == (17,) and evidence["used"]
    np.testing.assert_array_equal(hierarchy.foreground_logits(feats, weights) > 0, decision)
    same, none, why = hierarchy.self_trained_foreground(feats, scores, np.zeros_like(guess), 0)
    assert none is None and not same.any() and not why["used"]


def test_boundary_refinement_trims_a_halo() -> None:
    rng = np.random.default_rng(0)
    grid = (10, 10)
    where = np.zeros(grid, np.int64)
    where[2:8, 2:8] = 1  # halo: background that looks a little like the object
    where[3:7, 3:7] = 2  # the object
    look = np.array([[1.0, 0, 0], [0.8, 0.3, 0], [0, 1.0, 0]], np.float32)
    feats = (look[where.ravel()] + 0.05 * rng.normal(size=(2, 100, 3))).astype(np.float16)
    first = np.repeat((where > 0).reshape(1, -1), 2, axis=0)
    refined = hierarchy.refine_boundary(feats, first, grid)
    np.testing.assert_array_equal(refined, np.repeat((where == 2).reshape(1, -1), 2, axis=0))


def test_rare_part_is_dropped_with_a_note() -> None:
    feats, _, _ = synthetic_features(n=60)
    params = hierarchy.HierarchyParams(
        parts=4, subconcepts=2, bg_subconcepts=2, min_presence=0.5, position_weight=0
    )
    h, coding, report = hierarchy.fit(feats, GRID, params)
    assert h.n_parts == 4  # 4 parts asked, one (a variant split, in 35% of images) dropped
    assert any("Dropped 1 part" in n for n in report.notes)
    assert coding.masks.max() <= 3


def test_subconcepts_are_capped_for_small_sets() -> None:
    feats, _, _ = synthetic_features(n=8)
    params = hierarchy.HierarchyParams(parts=3, subconcepts=256, bg_subconcepts=256)
    h, _, report = hierarchy.fit(feats, GRID, params)
    assert all(len(c) <= 4 for c in h.sub_centroids)
    assert any("instead of 256" in n for n in report.notes)


@pytest.mark.parametrize(
    ("n", "parts", "message"),
    [(1, 3, "at least 2 images"), (4, 500, "too few for 500 parts")],
)
def test_bad_input_is_explained(n: int, parts: int, message: str) -> None:
    feats, _, _ = synthetic_features(n=max(n, 2))
    params = hierarchy.HierarchyParams(parts=parts)
    with pytest.raises(DiscoveryDataError, match=message):
        hierarchy.fit(feats[:n], GRID, params)


def test_identical_images_are_refused() -> None:
    feats, _, _ = synthetic_features(n=2)
    same = np.repeat(feats[:1], 5, axis=0)
    with pytest.raises(DiscoveryDataError, match="identical"):
        hierarchy.fit(same, GRID, hierarchy.HierarchyParams(parts=3))


def test_keypoint_nmi_ari_protocol() -> None:
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[:, :2] = 1  # top half is part 1
    result = SimpleNamespace(grid=(4, 4), codes=[{"id": 1}, {"id": 2}], masks=masks)
    records = {i: SimpleNamespace(width=40, height=40) for i in (1, 2)}
    perfect = {i: {"crown": (20.0, 5.0), "belly": (20.0, 35.0)} for i in (1, 2)}
    scores = keypoint_nmi_ari(result, records, perfect)
    assert scores["nmi"] == pytest.approx(100.0) and scores["keypoints"] == 4
    swapped = {1: {"crown": (20.0, 5.0)}, 2: {"crown": (20.0, 35.0)}}
    assert keypoint_nmi_ari(result, records, swapped)["nmi"] == pytest.approx(0.0)


def test_feature_cache_round_trips_non_contiguous_grids(tmp_path: Path) -> None:
    grid = np.arange(24, dtype=np.float32).reshape(4, 3, 2).transpose(2, 1, 0)
    cache = FeatureCache(tmp_path, {"backend": "x"})
    cache.put("ab" * 32, grid)
    np.testing.assert_array_equal(cache.get("ab" * 32), grid.astype(np.float16))
