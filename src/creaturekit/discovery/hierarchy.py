"""The 3-level hierarchy every backend shares: fg/bg -> M parts -> K sub-concepts per part.

Input is one fp16 array of patch features ``(N images, P = h*w patches, D)``. Backends
differ only in the features and in the :class:`~creaturekit.discovery.grouping.Grouper`
used at the part and sub-concept levels.

Level 1 improves on the reference's hand-picked 2-means: patches are grouped into
``fg_clusters`` clusters, and every cluster that dominates the image borders (its share
of border patches is at least half the border's share of the image) is background. The
decision and its evidence are recorded. Isolated patches are then cleaned from each
image's foreground mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from creaturekit.discovery.errors import DiscoveryDataError
from creaturekit.discovery.grouping import UNASSIGNED, Grouper, KMeansGrouper
from creaturekit.discovery.kmeans import assign, normalize, spherical_kmeans

#: Mask value of a patch no part claims (density-based groupers' noise).
MASK_UNASSIGNED = 255
BORDER_RULE = 0.5


@dataclass(frozen=True)
class HierarchyParams:
    """What the shared hierarchy needs to know."""

    parts: int = 8
    subconcepts: int = 256
    bg_subconcepts: int = 256
    seed: int = 42
    fg_clusters: int = 8
    min_presence: float = 0.02  # parts present in fewer images than this share are dropped


@dataclass
class Hierarchy:
    """The fitted centroids of every level: enough to code new images."""

    fgbg_centroids: np.ndarray  # (C, D)
    fgbg_is_background: np.ndarray  # (C,) bool
    part_centroids: np.ndarray  # (M, D), foreground parts; the background is part M
    sub_centroids: list[np.ndarray]  # M + 1 arrays (K_m, D); the last is the background's

    @property
    def n_parts(self) -> int:
        """Foreground parts plus the background part."""
        return len(self.part_centroids) + 1

    def tensors(self) -> dict[str, np.ndarray]:
        """Flat name -> array form (for safetensors)."""
        out: dict[str, np.ndarray] = {
            "fgbg.centroids": self.fgbg_centroids.astype(np.float32),
            "fgbg.is_background": self.fgbg_is_background.astype(np.uint8),
            "parts.centroids": self.part_centroids.astype(np.float32),
        }
        out.update({f"sub.{m}": c.astype(np.float32) for m, c in enumerate(self.sub_centroids)})
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray]) -> Hierarchy:
        n_parts = len(t["parts.centroids"]) + 1
        return cls(
            fgbg_centroids=t["fgbg.centroids"],
            fgbg_is_background=t["fgbg.is_background"].astype(bool),
            part_centroids=t["parts.centroids"],
            sub_centroids=[t[f"sub.{m}"] for m in range(n_parts)],
        )


@dataclass
class Coding:
    """Per-image output of the hierarchy."""

    masks: np.ndarray  # (N, P) uint8 part labels; background = M; 255 unassigned
    codes: np.ndarray  # (N, M + 1) int64 sub-concept code, -1 where absent or unassigned
    part_features: np.ndarray  # (N, M + 1, D) float32 mean feature per part (0 if absent)
    present: np.ndarray  # (N, M + 1) bool


@dataclass
class FitReport:
    """What fitting decided, and why (recorded in result.json)."""

    foreground: dict[str, Any]
    parts: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def border_mask(grid: tuple[int, int]) -> np.ndarray:
    """Flat ``(h*w,)`` mask of the outermost ring of patches."""
    h, w = grid
    m = np.zeros((h, w), bool)
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = True
    return m.reshape(-1)


def smooth_foreground(fg: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Remove isolated foreground patches and fill isolated holes in each flat mask ``(N, P)``.

    A patch flips only when at most one of its 8 neighbours agrees with it, so thin
    parts and corners survive.
    """
    h, w = grid
    img = np.pad(fg.reshape(-1, h, w).astype(np.int8), ((0, 0), (1, 1), (1, 1)), mode="edge")
    around = sum(img[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    around = np.asarray(around).reshape(fg.shape) - fg
    return np.where(fg, around > 1, around >= 7)


def _choose_background(
    labels: np.ndarray, n_clusters: int, grid: tuple[int, int]
) -> tuple[np.ndarray, dict[str, Any]]:
    border = np.broadcast_to(border_mask(grid), labels.shape)
    size = np.bincount(labels.ravel(), minlength=n_clusters).astype(np.float64)
    on_border = np.bincount(labels[border], minlength=n_clusters).astype(np.float64)
    share = on_border / np.maximum(size, 1)
    expected = float(border_mask(grid).mean())
    is_bg = share >= BORDER_RULE * expected
    is_bg[int(np.argmax(share))] = True  # at least one background cluster
    is_bg[int(np.argmin(share))] = False  # at least one foreground cluster
    evidence = {
        "rule": f"background = clusters whose border share >= {BORDER_RULE} x the border's "
        "share of the image",
        "border_fraction": round(expected, 4),
        "clusters": [
            {
                "size_share": round(float(size[c] / size.sum()), 4),
                "border_share": round(float(share[c]), 4),
                "background": bool(is_bg[c]),
            }
            for c in range(n_clusters)
        ],
    }
    return is_bg, evidence


def part_means(feats: np.ndarray, masks: np.ndarray, n_parts: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean unit feature of every part in every image, and where the part is present."""
    n, _, d = feats.shape
    means = np.zeros((n, n_parts, d), np.float32)
    counts = np.zeros((n, n_parts), np.int64)
    eye = np.eye(n_parts + 1, dtype=np.float32)[:, :n_parts]  # row n_parts: unassigned
    for i in range(n):
        lab = np.minimum(masks[i].astype(np.int64), n_parts)
        onehot = eye[lab]
        means[i] = onehot.T @ normalize(feats[i])
        counts[i] = onehot.sum(axis=0)
    present = counts > 0
    means /= np.maximum(counts, 1)[:, :, None]
    return means, present


def _foreground(h: Hierarchy, flat: np.ndarray, n: int, grid: tuple[int, int]) -> np.ndarray:
    cluster = assign(flat, h.fgbg_centroids).reshape(n, -1)
    return smooth_foreground(~h.fgbg_is_background[cluster], grid)


def encode(h: Hierarchy, feats: np.ndarray, grid: tuple[int, int]) -> Coding:
    """Code new images with fitted centroids: every patch and part mean to its nearest."""
    n, p, d = feats.shape
    flat = feats.reshape(n * p, d)
    fg = _foreground(h, flat, n, grid).reshape(-1)
    masks = np.full(n * p, len(h.part_centroids), np.uint8)
    rows = np.flatnonzero(fg)
    masks[rows] = assign(flat, h.part_centroids, rows)
    masks = masks.reshape(n, p)
    means, present = part_means(feats, masks, h.n_parts)
    codes = np.full((n, h.n_parts), UNASSIGNED, np.int64)
    for m, cents in enumerate(h.sub_centroids):
        idx = np.flatnonzero(present[:, m])
        codes[idx, m] = assign(means[idx, m], cents)
    return Coding(masks=masks, codes=codes, part_features=means, present=present)


def _cap_k(k: int, vectors: np.ndarray) -> int:
    distinct = len(np.unique(vectors.astype(np.float16), axis=0))
    return max(1, min(k, len(vectors) // 2, distinct))


def _presence(labels: np.ndarray, image: np.ndarray, n: int, k: int) -> np.ndarray:
    """Share of the ``n`` images holding at least one patch of each of ``k`` labels."""
    has = np.zeros((n, k + 1), bool)
    has[image, np.where(labels < 0, k, labels)] = True
    return has[:, :k].mean(axis=0)


def fit(
    feats: np.ndarray,
    grid: tuple[int, int],
    params: HierarchyParams,
    grouper: Grouper | None = None,
) -> tuple[Hierarchy, Coding, FitReport]:
    """Fit all three levels on ALL images' patch features ``(N, P, D)``."""
    grouper = grouper or KMeansGrouper()
    n, p, d = feats.shape
    if n < 2:
        raise DiscoveryDataError("Discovery needs at least 2 images; the project has 1.")
    flat = feats.reshape(n * p, d)
    notes: list[str] = []

    # Level 1: foreground / background.
    fg_centroids, cluster = spherical_kmeans(flat, params.fg_clusters, params.seed)
    is_bg, evidence = _choose_background(cluster.reshape(n, p), params.fg_clusters, grid)
    fg = smooth_foreground(~is_bg[cluster.reshape(n, p)], grid).reshape(-1)
    rows = np.flatnonzero(fg)
    evidence["foreground_share"] = round(float(fg.mean()), 4)
    if len(rows) < params.parts:
        raise DiscoveryDataError(
            f"Only {len(rows)} foreground patches were found, too few for {params.parts} parts; "
            "use fewer parts (--parts) or more images."
        )

    # Level 2: parts over foreground patches only; rarely present parts are dropped.
    part_centroids, part_labels = grouper.fit(flat, params.parts, params.seed + 1, rows=rows)
    presence = _presence(part_labels, rows // p, n, len(part_centroids))
    keep = presence >= params.min_presence
    if not keep.all():
        notes.append(
            f"Dropped {int((~keep).sum())} part(s) present in under {params.min_presence:.0%} of "
            f"images (presence {', '.join(f'{v:.1%}' for v in presence[~keep])}); their "
            "patches went to the nearest remaining part."
        )
        part_centroids = part_centroids[keep]
        remap = np.cumsum(keep) - 1
        moved = part_labels >= 0
        moved[moved] = ~keep[part_labels[moved]]
        part_labels = np.where(part_labels >= 0, remap[part_labels], UNASSIGNED)
        part_labels[moved] = assign(flat, part_centroids, rows[moved])
    masks = np.full(n * p, len(part_centroids), np.uint8)
    masks[rows] = np.where(part_labels < 0, MASK_UNASSIGNED, part_labels)
    n_parts = len(part_centroids) + 1
    masks = masks.reshape(n, p)

    # Level 3: sub-concepts per part (the background last) over per-image part means.
    means, present = part_means(feats, masks, n_parts)
    codes = np.full((n, n_parts), UNASSIGNED, np.int64)
    subs: list[np.ndarray] = []
    part_info: list[dict[str, Any]] = []
    identical = True
    for m in range(n_parts):
        is_background = m == n_parts - 1
        idx = np.flatnonzero(present[:, m])
        want = params.bg_subconcepts if is_background else params.subconcepts
        k = _cap_k(want, means[idx, m])
        identical &= k == 1 and len(idx) > 1
        if k < want:
            notes.append(
                f"{'Background' if is_background else f'Part {m}'}: {k} sub-concepts instead of "
                f"{want} (present in {len(idx)} images)."
            )
        cents, sub_labels = grouper.fit(means[idx, m], k, params.seed + 2 + m)
        codes[idx, m] = sub_labels
        subs.append(cents)
        part_info.append(
            {
                "index": m,
                "is_background": is_background,
                "subconcepts": len(cents),
                "coverage": round(float(np.mean(masks == m)), 4),
                "presence": round(float(present[:, m].mean()), 4),
                "unassigned_images": int(np.sum(sub_labels < 0)),
            }
        )
    if identical:
        raise DiscoveryDataError(
            f"All {n} images give identical features, so there is nothing to tell apart; "
            "discovery needs images that differ."
        )
    hierarchy = Hierarchy(fg_centroids, is_bg, part_centroids, subs)
    coding = Coding(masks=masks, codes=codes, part_features=means, present=present)
    return hierarchy, coding, FitReport(foreground=evidence, parts=part_info, notes=notes)
