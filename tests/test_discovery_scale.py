"""Discovery at scale: features read from the cache, sampled fitting, resumable extraction,
the faiss k-means engine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from creaturekit.discovery import hierarchy
from creaturekit.discovery.errors import DiscoveryDataError
from creaturekit.discovery.features import FeatureSet
from creaturekit.discovery.grouping import KMeansGrouper
from creaturekit.discovery.scale import Scale
from creaturekit.errors import ConfigError
from tests.benchmark_scripts import load_benchmark
from tests.test_discovery_core import GRID, part_consistency, synthetic_features

scaling = load_benchmark("discovery_scaling")


def small_backbone(**options: Any) -> Any:
    """The scaling benchmark's synthetic backbone, with few clusters for a small set."""
    opts = {"parts": 8, "subconcepts": 4, "bg_subconcepts": 2, "image_size": 8, "batch_size": 8}
    return scaling.SyntheticBackbone(**{**opts, **options})


def test_sampled_fit_codes_every_image_like_the_whole_fit() -> None:
    feats, layout, variants = synthetic_features(n=60)
    base = {"parts": 3, "subconcepts": 2, "bg_subconcepts": 3, "position_weight": 0}
    whole_h, whole, _ = hierarchy.fit(feats, GRID, hierarchy.HierarchyParams(**base))
    params = hierarchy.HierarchyParams(**base, sample_images=20, subconcept_points=6)
    h, coding, report = hierarchy.fit(feats, GRID, params)
    assert report.scale == {"images": 60, "regions_from": 20, "subconcepts_from": 18}
    assert any("seeded sample of 20 of the 60 images" in note for note in report.notes)
    bg = h.n_parts - 1
    assert ((coding.masks != bg) == (layout > 0)).mean() > 0.98
    assert part_consistency(coding.masks, layout) > 0.95
    for part in range(1, 4):  # codes still tell every part's two variants apart
        label = coding.masks[0][layout == part][0]
        assert len(set(zip(coding.codes[:, label], variants[:, part - 1], strict=True))) == 2
    assert report.parts[bg].presence == 1.0 and coding.codes.shape == (60, h.n_parts)
    # what is fitted whole is not sampled: the sample path equals the in-memory one
    big = hierarchy.HierarchyParams(**base, sample_images=60, subconcept_points=30)
    again_h, again, again_report = hierarchy.fit(feats, GRID, big)
    np.testing.assert_array_equal(again.masks, whole.masks)
    np.testing.assert_array_equal(again.codes, whole.codes)
    assert not any("sample" in note for note in again_report.notes)
    for a, b in zip(again_h.tensors().values(), whole_h.tensors().values(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_streaming_pass_is_chunk_independent() -> None:
    feats, _, _ = synthetic_features(n=40)
    base = {"parts": 3, "subconcepts": 2, "position_weight": 0, "sample_images": 10}
    _, one, _ = hierarchy.fit(feats, GRID, hierarchy.HierarchyParams(**base, chunk_images=64))
    _, many, _ = hierarchy.fit(feats, GRID, hierarchy.HierarchyParams(**base, chunk_images=3))
    np.testing.assert_array_equal(one.masks, many.masks)
    np.testing.assert_array_equal(one.codes, many.codes)


def test_cached_features_give_the_in_memory_result(tmp_path: Path) -> None:
    paths = scaling.write_images(tmp_path / "images", 24)
    in_memory = small_backbone().fit(paths)
    cached = small_backbone()
    feats = cached.features(paths, tmp_path / "cache")
    assert isinstance(feats, FeatureSet) and feats.shape == (24, 256, 768)
    np.testing.assert_array_equal(feats[np.array([3, 0])], in_memory.extract(paths)[[3, 0]])
    cached.fit(paths, tmp_path / "cache")
    for a, b in zip(
        in_memory.hierarchy_.tensors().values(), cached.hierarchy_.tensors().values(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(in_memory.coding_.codes, cached.coding_.codes)
    np.testing.assert_array_equal(in_memory.coding_.masks, cached.coding_.masks)


def count_embeds(disc: Any, fail_after: int | None = None) -> list[int]:
    """Record how many images each ``_embed`` call gets; raise KeyboardInterrupt after
    ``fail_after`` calls (an interrupted extraction)."""
    calls: list[int] = []
    embed = disc._embed

    def counted(pixels: Any) -> Any:
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt
        calls.append(len(pixels))
        return embed(pixels)

    disc._embed = counted
    return calls


def test_interrupted_extraction_continues_where_it_stopped(tmp_path: Path) -> None:
    paths = scaling.write_images(tmp_path / "images", 20)
    first = small_backbone()
    calls = count_embeds(first, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        first.fit(paths, tmp_path / "cache")
    assert calls == [8, 8]
    second = small_backbone()
    calls = count_embeds(second)
    second.fit(paths, tmp_path / "cache")
    assert calls == [4]  # only the images the first run had not reached
    # a damaged entry is recomputed when read, never trusted
    entry = next((tmp_path / "cache").rglob("*.safetensors"))
    entry.write_bytes(b"not a tensor file")
    third = small_backbone()
    calls = count_embeds(third)
    np.testing.assert_array_equal(
        third.extract(paths, tmp_path / "cache"), small_backbone().extract(paths)
    )
    assert calls == [1]


def test_faiss_engine_is_seeded_finds_clusters_and_is_recorded(tmp_path: Path) -> None:
    pytest.importorskip("faiss", reason="the faiss extra is not installed")
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:3] * 5
    x = np.concatenate([c + 0.1 * rng.normal(size=(50, 8)) for c in centres]).astype(np.float16)
    grouper = KMeansGrouper(engine="faiss")
    c1, l1 = grouper.fit(x, 3, seed=1)
    c2, l2 = grouper.fit(x, 3, seed=1)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(l1, l2)
    assert len(set(zip(l1, np.repeat([0, 1, 2], 50), strict=True))) == 3
    assert np.bincount(l1).tolist() == [50, 50, 50]
    np.testing.assert_allclose(np.linalg.norm(c1, axis=1), 1.0, rtol=1e-5)

    paths = scaling.write_images(tmp_path / "images", 16)
    fitted = [small_backbone().fit(paths, scale=Scale(kmeans="faiss")) for _ in range(2)]
    assert fitted[0].report_.scale["grouping"] == "faiss"
    for a, b in zip(*(f.hierarchy_.tensors().values() for f in fitted), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        (Scale(kmeans="sklearn"), "Unknown k-means engine 'sklearn'"),
        (Scale(sample_images=0), "sample_images must be at least 1"),
    ],
)
def test_bad_scale_is_explained(scale: Scale, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        small_backbone().fit(scaling.write_images(tmp_path, 2), scale=scale)


def test_no_images_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryDataError, match="No images"):
        small_backbone().features([], tmp_path / "cache")


def test_faiss_missing_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'creaturekit\[faiss\]'"):
        Scale(kmeans="faiss").check()
