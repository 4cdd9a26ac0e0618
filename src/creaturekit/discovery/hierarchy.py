"""The 3-level hierarchy every backend shares: fg/bg -> M parts -> K sub-concepts per part.

Input is one fp16 array of patch features ``(N images, P = h*w patches, D)``. Backends
differ only in the features and in the :class:`~creaturekit.discovery.grouping.Grouper`
used at the part and sub-concept levels.

Level 2 adds to each foreground patch its position relative to the object (centroid
and spread of the image's foreground, in the direction the object faces), so parts are
where they are as well as what they look like. Facing is decided per image: a first
guess aligns every image's left-right feature difference with all others', then each
image takes the mirroring under which its patches fit the parts better, and the parts
are regrouped until no image changes. (A mirror-invariant position cannot tell a head
from a tail: both lie at the far ends.) A backend may mark its last feature channels as
appearance (e.g. colour): the part level leaves them out, so parts are grouped by what
and where a region is rather than by its colour; fg/bg and sub-concepts use them.

Level 1 improves on the reference's hand-picked global 2-means with a per-image border
prior: a patch's background score is how closely it matches its OWN image's border
patches (3rd-best cosine similarity, robust to a part touching the border); one Otsu
threshold over all images' scores gives a first guess. Then a linear classifier learns
from the first guess's confident patches (the more object-like half of its foreground,
the more border-like 75% of its background) what foreground looks like across ALL
images, and decides every patch (classes weighted equally). Isolated
patches are cleaned, and patches on the fg/bg boundary are re-decided by whether they
look more like their image's inner foreground or inner background. Threshold,
classifier and score distribution are recorded as evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from creaturekit.discovery.errors import DiscoveryDataError
from creaturekit.discovery.features import FeatureSet
from creaturekit.discovery.grouping import UNASSIGNED, Grouper, KMeansGrouper
from creaturekit.discovery.kmeans import assign, normalize
from creaturekit.progress import track

#: Mask value of a patch no part claims (density-based groupers' noise).
MASK_UNASSIGNED = 255


@dataclass(frozen=True)
class HierarchyParams:
    """What the shared hierarchy needs to know."""

    parts: int = 8
    subconcepts: int = 256
    bg_subconcepts: int = 256
    seed: int = 42
    min_presence: float = 0.02  # parts present in fewer images than this share are dropped
    position_weight: float = 1.0  # weight of the object-centred position cue at the part level
    appearance_dims: int = 0  # trailing feature channels the part level leaves out
    sample_images: int = 1000  # images (seeded sample) the fg/bg and part levels learn from
    subconcept_points: int = 64  # images per sub-concept centroid (seeded sample) at most
    chunk_images: int = 256  # images coded per step of the streaming pass


@dataclass
class Hierarchy:
    """The fitted centroids of every level: enough to code new images."""

    fg_threshold: float  # border-similarity score below which a patch is foreground
    part_centroids: np.ndarray  # (M, D - appearance_dims + 2); the background is part M
    sub_centroids: list[np.ndarray]  # M + 1 arrays (K_m, D); the last is the background's
    position_weight: float = 0.0
    appearance_dims: int = 0
    fg_classifier: np.ndarray | None = None  # (D + 1,): weights, bias; None: the threshold
    facing: bool = False  # position in the object's facing direction; False: mirror-invariant
    interior: bool = False  # part means over interior patches (:func:`part_means`)

    def foreground(self, feats: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """The first fg/bg decision ``(N, P)`` for ``feats`` (before cleaning)."""
        if self.fg_classifier is None:
            return border_similarity(feats, grid) < self.fg_threshold
        return foreground_logits(feats, self.fg_classifier) > 0

    @property
    def n_parts(self) -> int:
        """Foreground parts plus the background part."""
        return len(self.part_centroids) + 1

    def tensors(self) -> dict[str, np.ndarray]:
        """Flat name -> array form (for safetensors)."""
        out: dict[str, np.ndarray] = {
            "fgbg.threshold": np.array([self.fg_threshold], np.float32),
            "parts.centroids": self.part_centroids.astype(np.float32),
            "parts.position_weight": np.array([self.position_weight], np.float32),
            "parts.appearance_dims": np.array([self.appearance_dims], np.int64),
            "parts.facing": np.array([int(self.facing)], np.int64),
            "sub.interior": np.array([int(self.interior)], np.int64),
        }
        out.update({f"sub.{m}": c.astype(np.float32) for m, c in enumerate(self.sub_centroids)})
        if self.fg_classifier is not None:
            out["fgbg.classifier"] = self.fg_classifier.astype(np.float32)
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray]) -> Hierarchy:
        n_parts = len(t["parts.centroids"]) + 1
        return cls(
            fg_threshold=float(t["fgbg.threshold"][0]),
            part_centroids=t["parts.centroids"],
            sub_centroids=[t[f"sub.{m}"] for m in range(n_parts)],
            position_weight=float(t["parts.position_weight"][0]),
            appearance_dims=int(t.get("parts.appearance_dims", np.zeros(1))[0]),
            fg_classifier=t.get("fgbg.classifier"),
            facing=bool(t.get("parts.facing", np.zeros(1))[0]),
            interior=bool(t.get("sub.interior", np.zeros(1))[0]),
        )


@dataclass
class ImageCodes:
    """Per-image output of the hierarchy for a whole image set (what fitting codes)."""

    masks: np.ndarray  # (N, P) uint8 part labels; background = M; 255 unassigned
    codes: np.ndarray  # (N, M + 1) int64 sub-concept code, -1 where absent or unassigned
    present: np.ndarray  # (N, M + 1) bool


@dataclass
class Part:
    """One discovered part (the background is a part too), as result.json records it."""

    index: int
    is_background: bool
    subconcepts: int  # its number of sub-concepts (codes 0 .. subconcepts - 1)
    coverage: float = 0.0  # share of all patches it holds
    presence: float = 0.0  # share of images it appears in
    unassigned_images: int = 0  # images whose part mean no sub-concept took

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Part:
        """A part from its result.json record (ValueError/TypeError/KeyError if invalid)."""
        known = {f.name for f in fields(cls)}
        return cls(
            index=int(data["index"]),
            is_background=bool(data["is_background"]),
            subconcepts=int(data["subconcepts"]),
            **{k: data[k] for k in known - {"index", "is_background", "subconcepts"} if k in data},
        )


@dataclass
class Coding(ImageCodes):
    """Per-image output of :func:`encode`, with each part's mean feature (for scoring)."""

    part_features: np.ndarray  # (N, M + 1, D) float32 mean feature per part (0 if absent)


@dataclass
class FitReport:
    """What fitting decided, and why (recorded in result.json)."""

    foreground: dict[str, Any]
    parts: list[Part]
    notes: list[str] = field(default_factory=list)
    facing: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, Any] = field(default_factory=dict)  # images in all, and learnt from


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


def with_position(
    feats: np.ndarray,
    fg: np.ndarray,
    grid: tuple[int, int],
    weight: float,
    facing: np.ndarray | None = None,
) -> np.ndarray:
    """Unit features plus an object-centred position ``(dy, facing * dx)``.

    Positions are relative to each image's foreground centroid and scaled by its spread,
    so "top of the creature" means the same at any size or place. ``facing`` (``(N,)``,
    +1 or -1) mirrors ``dx`` per image; None gives the mirror-invariant ``|dx|``.
    Returns ``(N * P, D + 2)`` fp16.
    """
    n, p, d = feats.shape
    ys, xs = np.divmod(np.arange(p, dtype=np.float32), grid[1])
    out = np.empty((n, p, d + 2), np.float16)
    for i in range(n):
        m = fg[i] if fg[i].any() else np.ones(p, bool)
        cy, cx = ys[m].mean(), xs[m].mean()
        spread = float(np.sqrt(((ys[m] - cy) ** 2 + (xs[m] - cx) ** 2).mean())) + 1.0
        out[i, :, :d] = normalize(feats[i])
        out[i, :, d] = weight * (ys - cy) / spread
        dx = (xs - cx) / spread
        out[i, :, d + 1] = weight * (np.abs(dx) if facing is None else facing[i] * dx)
    return out.reshape(n * p, d + 2)


FACING_ROUNDS = 4  # groupings at most while images' facing is re-decided


def facing_guess(feats: np.ndarray, fg: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A first facing (+1 or -1) per image, from features alone.

    Each image's foreground gives a left-right difference: its mean unit feature right of
    its centroid minus the mean left of it. Images facing the same way have similar
    differences, mirrored ones opposite; the sign of each difference's projection on the
    differences' top singular vector is the guess.
    """
    n, p, d = feats.shape
    xs = np.arange(p, dtype=np.float32) % grid[1]
    diffs = np.zeros((n, d), np.float32)
    for i in range(n):
        m = fg[i]
        if m.any():
            diffs[i] = np.sign(xs[m] - xs[m].mean()) @ normalize(feats[i][m]) / m.sum()
    if not diffs.any():
        return np.ones(n, np.float32)
    top = np.linalg.svd(diffs, full_matrices=False)[2][0]
    return np.where(diffs @ top < 0, -1.0, 1.0).astype(np.float32)


def mirror_gain(
    placed: np.ndarray, fg: np.ndarray, centroids: np.ndarray, chunk: int = 65_536
) -> np.ndarray:
    """``(N,)``: how much better each image's foreground patches fit ``centroids`` with
    their ``dx`` channel (the last) negated (summed best cosine, mirrored minus as is)."""
    n, p = fg.shape
    unit_c = normalize(centroids)
    rows = np.flatnonzero(fg.reshape(-1))
    gain = np.zeros(n)
    for s in range(0, len(rows), chunk):
        r = rows[s : s + chunk]
        x = normalize(placed[r])
        sims = x @ unit_c.T
        mirrored = sims - 2.0 * x[:, -1:] * unit_c[:, -1]
        diff = mirrored.max(axis=1) - sims.max(axis=1)
        gain += np.bincount(r // p, weights=diff.astype(np.float64), minlength=n)
    return gain


def mirror_to_fit(placed: np.ndarray, fg: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Mirror, in place, every image of ``placed`` whose foreground fits ``centroids``
    better mirrored (:func:`mirror_gain` > 0); returns which images were mirrored ``(N,)``."""
    flip = mirror_gain(placed, fg, centroids) > 0
    placed.reshape(-1, fg.shape[1], placed.shape[-1])[flip, :, -1] *= -1
    return flip


def group_facing(
    placed: np.ndarray,
    fg: np.ndarray,
    k: int,
    seed: int,
    grouper: Grouper,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Group the foreground patches of ``placed`` into ``k`` parts, re-deciding facing.

    After each grouping but the last, the images that fit the parts better mirrored are
    mirrored (in ``placed``, in place) and the patches regrouped, until none changes or
    after ``FACING_ROUNDS`` groupings. Returns centroids, labels of the foreground rows
    and evidence.
    """
    rows = np.flatnonzero(fg.reshape(-1))
    mirrored = np.zeros(len(fg), bool)
    changed: list[int] = []
    for rounds in range(1, FACING_ROUNDS + 1):
        centroids, labels = grouper.fit(placed, k, seed, rows=rows)
        if rounds == FACING_ROUNDS:
            flip = mirror_gain(placed, fg, centroids) > 0  # left as grouped: unsettled
            break
        flip = mirror_to_fit(placed, fg, centroids)
        if not flip.any():
            break
        changed.append(int(flip.sum()))
        mirrored ^= flip
    evidence = {
        "rule": "each image's position is taken in the direction it faces: a first guess "
        "from its left-right feature difference, then each image takes the mirroring that "
        "fits the parts better, and the parts are regrouped until none changes",
        "groupings": rounds,
        "changed_per_round": changed,
        "unsettled": int(flip.sum()),
        "changed_from_first_guess": int(mirrored.sum()),
    }
    return centroids, labels, evidence


def part_view(feats: np.ndarray, appearance_dims: int) -> np.ndarray:
    """The channels the part level uses: all but the trailing ``appearance_dims``."""
    return feats[..., : feats.shape[-1] - appearance_dims]


BORDER_RANK = 3


def _touching(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Flat masks ``(N, P)``: patches with at least one 8-neighbour set in ``mask``."""
    h, w = grid
    img = np.pad(mask.reshape(-1, h, w), ((0, 0), (1, 1), (1, 1)))
    around = np.zeros((len(mask), h, w), bool)
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                around |= img[:, dy : dy + h, dx : dx + w]
    return around.reshape(mask.shape)


def refine_boundary(feats: np.ndarray, fg: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Re-decide the patches on each image's fg/bg boundary by their own image's patches.

    A boundary patch becomes foreground when it is closer (3rd-best cosine similarity)
    to the image's inner foreground than to its inner background, which trims the halo
    that wide receptive fields leave around an object.
    """
    edge = (fg & _touching(~fg, grid)) | (~fg & _touching(fg, grid))
    out = fg.copy()
    for i in range(len(fg)):
        inner_fg, inner_bg = fg[i] & ~edge[i], ~fg[i] & ~edge[i]
        if min(inner_fg.sum(), inner_bg.sum()) < BORDER_RANK or not edge[i].any():
            continue
        unit = normalize(feats[i])
        near = unit[edge[i]]
        to_fg = np.partition(near @ unit[inner_fg].T, -BORDER_RANK, axis=1)[:, -BORDER_RANK]
        to_bg = np.partition(near @ unit[inner_bg].T, -BORDER_RANK, axis=1)[:, -BORDER_RANK]
        out[i, edge[i]] = to_fg > to_bg
    return out


def border_similarity(feats: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(N, P)``: each patch's 3rd-best cosine similarity to its own image's border patches."""
    border = border_mask(grid)
    rank = min(BORDER_RANK, int(border.sum()))
    out = np.empty(feats.shape[:2], np.float32)
    for i in range(len(feats)):
        unit = normalize(feats[i])
        sims = unit @ unit[border].T
        out[i] = np.partition(sims, -rank, axis=1)[:, -rank]
    return out


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that best splits ``values`` in two (maximal between-class variance)."""
    hist, edges = np.histogram(values, bins)
    mids = (edges[1:] + edges[:-1]) / 2
    below = np.cumsum(hist)
    above = below[-1] - below
    mass = np.cumsum(hist * mids)
    mean_below = mass / np.maximum(below, 1)
    mean_above = (mass[-1] - mass) / np.maximum(above, 1)
    return float(mids[np.argmax(below * above * (mean_below - mean_above) ** 2)])


def _evidence(
    scores: np.ndarray, threshold: float, fg: np.ndarray, learnt: dict[str, Any]
) -> dict[str, Any]:
    quantiles = np.quantile(scores, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "rule": "first guess: patches unlike their own image's border (border-similarity "
        "score below an Otsu threshold over all images); then a linear classifier trained "
        "on the first guess's confident patches decides every patch; isolated patches "
        "cleaned, boundary patches re-decided by their image's inner foreground and "
        "background",
        "threshold": round(threshold, 4),
        "score_quantiles": [round(float(q), 4) for q in quantiles],
        "classifier": learnt,
        "foreground_share": round(float(fg.mean()), 4),
        "images_without_foreground": int((~fg.any(axis=1)).sum()),
    }


#: Self-training sample: at most this many confident patches, at most a quarter foreground.
CLASSIFIER_ROWS = 120_000
MIN_CONFIDENT = 8  # fewer confident patches of either kind: the first guess stands


def foreground_logits(feats: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(N, P)`` linear scores of unit features; ``weights``: ``(D + 1,)``, the bias last."""
    return np.stack([normalize(f) @ weights[:-1] + weights[-1] for f in feats])


def self_trained_foreground(
    feats: np.ndarray, scores: np.ndarray, guess: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """A second fg/bg decision learnt from the confident patches of the first ``guess``.

    Positives: the guessed foreground patches scoring below the median of the guessed
    foreground (least like their border); negatives: the guessed background patches
    above the lower quartile of its scores. A logistic regression on unit features
    (seeded subsample, classes weighted equally) then decides every patch. Returns the
    decision ``(N, P)``, the classifier ``(D + 1,)`` (weights, bias; None when there are
    too few confident patches) and evidence.
    """
    from sklearn.linear_model import LogisticRegression

    flat_scores, flat_guess = scores.reshape(-1), guess.reshape(-1)
    if flat_guess.all() or not flat_guess.any():
        return guess, None, {"used": False, "why": "the first guess is one-sided"}
    pos = np.flatnonzero(flat_guess & (flat_scores < np.median(flat_scores[flat_guess])))
    neg = np.flatnonzero(~flat_guess & (flat_scores > np.quantile(flat_scores[~flat_guess], 0.25)))
    if min(len(pos), len(neg)) < MIN_CONFIDENT:
        return guess, None, {"used": False, "why": "too few confident patches"}
    rng = np.random.default_rng(seed)
    pos = rng.choice(pos, min(len(pos), CLASSIFIER_ROWS // 4), replace=False)
    neg = rng.choice(neg, min(len(neg), CLASSIFIER_ROWS - len(pos)), replace=False)
    rows = np.concatenate([pos, neg])
    x = normalize(feats.reshape(-1, feats.shape[-1])[rows])
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    model = LogisticRegression(C=10.0, class_weight="balanced", max_iter=1000).fit(x, y)
    weights = np.r_[model.coef_[0], model.intercept_].astype(np.float32)
    decision = foreground_logits(feats, weights) > 0
    evidence = {
        "used": True,
        "positives": len(pos),
        "negatives": len(neg),
        "agreement_with_first_guess": round(float((decision == guess).mean()), 4),
    }
    return decision, weights, evidence


INTERIOR_MIN = 4
"""Interior patches a part needs in an image for its mean to use only them."""


def interior(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(N, P)`` bool: patches whose four neighbours (inside the grid) carry their label."""
    h, w = grid
    lab = masks.reshape(-1, h, w)
    inner = np.ones(lab.shape, bool)
    inner[:, 1:] &= lab[:, 1:] == lab[:, :-1]
    inner[:, :-1] &= lab[:, :-1] == lab[:, 1:]
    inner[:, :, 1:] &= lab[:, :, 1:] == lab[:, :, :-1]
    inner[:, :, :-1] &= lab[:, :, :-1] == lab[:, :, 1:]
    return inner.reshape(masks.shape)


def part_means(
    feats: np.ndarray, masks: np.ndarray, n_parts: int, grid: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean unit feature of every part in every image, and where the part is present.

    With ``grid``, a part with at least :data:`INTERIOR_MIN` interior patches in an
    image (:func:`interior`) is averaged over those alone: a boundary patch sees the
    neighbouring part or the background too (on the toy world the head's sub-concepts
    went from 0.78 to 0.98 pure; docs/discovery.md, "Interior patches and a lighter
    position cue").
    """
    n, _, d = feats.shape
    means = np.zeros((n, n_parts, d), np.float32)
    counts = np.zeros((n, n_parts), np.int64)
    eye = np.eye(n_parts + 1, dtype=np.float32)[:, :n_parts]  # row n_parts: unassigned
    inner = interior(masks, grid) if grid is not None else None
    for i in range(n):
        lab = np.minimum(masks[i].astype(np.int64), n_parts)
        onehot = eye[lab]
        counts[i] = onehot.sum(axis=0)
        if inner is not None:
            core = onehot * inner[i][:, None]
            enough = core.sum(axis=0) >= INTERIOR_MIN
            onehot = np.where(enough, core, onehot)
        means[i] = onehot.T @ normalize(feats[i])
        means[i] /= np.maximum(onehot.sum(axis=0), 1)[:, None]
    present = counts > 0
    return means, present


def encode_masks(h: Hierarchy, feats: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Part masks ``(N, P)`` of new images by fitted centroids (every patch to its nearest)."""
    n, p, _ = feats.shape
    fg = refine_boundary(feats, smooth_foreground(h.foreground(feats, grid), grid), grid)
    facing = np.ones(n, np.float32) if h.facing else None
    placed = with_position(part_view(feats, h.appearance_dims), fg, grid, h.position_weight, facing)
    if h.facing:
        mirror_to_fit(placed, fg, h.part_centroids)
    masks = np.full(n * p, len(h.part_centroids), np.uint8)
    rows = np.flatnonzero(fg.reshape(-1))
    masks[rows] = assign(placed, h.part_centroids, rows)
    return masks.reshape(n, p)


def sub_codes(h: Hierarchy, means: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``(N, M + 1)`` sub-concept codes of part means: the nearest centroid, -1 where absent."""
    codes = np.full(present.shape, UNASSIGNED, np.int64)
    for m, cents in enumerate(h.sub_centroids):
        idx = np.flatnonzero(present[:, m])
        codes[idx, m] = assign(means[idx, m], cents)
    return codes


def encode(h: Hierarchy, feats: np.ndarray, grid: tuple[int, int]) -> Coding:
    """Code new images with fitted centroids: every patch and part mean to its nearest."""
    masks = encode_masks(h, feats, grid)
    means, present = part_means(feats, masks, h.n_parts, grid if h.interior else None)
    codes = sub_codes(h, means, present)
    return Coding(masks=masks, codes=codes, part_features=means, present=present)


def _distinct(vectors: np.ndarray) -> int:
    """How many different vectors there are (at fp16 precision)."""
    return len(np.unique(vectors.astype(np.float16), axis=0))


def _presence(labels: np.ndarray, image: np.ndarray, n: int, k: int) -> np.ndarray:
    """Share of the ``n`` images holding at least one patch of each of ``k`` labels."""
    has = np.zeros((n, k + 1), bool)
    has[image, np.where(labels < 0, k, labels)] = True
    return has[:, :k].mean(axis=0)


def sample_rows(n: int, cap: int, seed: int, stream: int) -> np.ndarray:
    """All rows ``0..n-1`` when ``n <= cap``, else a sorted seeded sample of ``cap`` of them
    (``stream`` tells the samples of one seed apart)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, stream]).choice(n, size=cap, replace=False))


@dataclass
class _Regions:
    """Levels 1 and 2 fitted on a sample of images (no sub-concepts yet)."""

    hierarchy: Hierarchy
    masks: np.ndarray  # (S, P) part masks of the sampled images
    foreground: dict[str, Any]
    facing: dict[str, Any]


def fit_regions(
    feats: np.ndarray,
    grid: tuple[int, int],
    params: HierarchyParams,
    grouper: Grouper,
    notes: list[str],
) -> _Regions:
    """Levels 1 (fg/bg) and 2 (parts) on the patch features ``(S, P, D)`` of ``S`` images."""
    n, p, _ = feats.shape

    # Level 1: foreground / background.
    scores = border_similarity(feats, grid)
    threshold = otsu_threshold(scores)
    decision, classifier, learnt = self_trained_foreground(
        feats, scores, scores < threshold, params.seed
    )
    fg2d = refine_boundary(feats, smooth_foreground(decision, grid), grid)
    evidence = _evidence(scores, threshold, fg2d, learnt)
    rows = np.flatnonzero(fg2d.reshape(-1))
    if len(rows) < params.parts:
        raise DiscoveryDataError(
            f"Only {len(rows)} foreground patches were found, too few for {params.parts} parts; "
            "use fewer parts (--parts) or more images."
        )

    # Level 2: parts over foreground patches only, in each image's facing direction;
    # rarely present parts are dropped.
    pv = part_view(feats, params.appearance_dims)
    placed = with_position(pv, fg2d, grid, params.position_weight, facing_guess(pv, fg2d, grid))
    part_centroids, part_labels, facing = group_facing(
        placed, fg2d, params.parts, params.seed + 1, grouper
    )
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
        part_labels[moved] = assign(placed, part_centroids, rows[moved])
    del placed
    masks = np.full(n * p, len(part_centroids), np.uint8)
    masks[rows] = np.where(part_labels < 0, MASK_UNASSIGNED, part_labels)
    hierarchy = Hierarchy(
        threshold,
        part_centroids,
        [],
        params.position_weight,
        params.appearance_dims,
        classifier,
        facing=True,
        interior=True,
    )
    return _Regions(hierarchy, masks.reshape(n, p), evidence, facing)


def fit_subconcepts(
    means: np.ndarray,
    present: np.ndarray,
    params: HierarchyParams,
    grouper: Grouper,
    notes: list[str],
) -> tuple[list[np.ndarray], np.ndarray]:
    """Level 3: per part (the background last), sub-concept centroids over the per-image
    part means ``(S, M + 1, D)`` where ``present``; returns them and the codes ``(S, M + 1)``."""
    n_images, n_parts = present.shape
    codes = np.full((n_images, n_parts), UNASSIGNED, np.int64)
    subs: list[np.ndarray] = []
    identical = True
    for m in range(n_parts):
        is_background = m == n_parts - 1
        idx = np.flatnonzero(present[:, m])
        want = params.bg_subconcepts if is_background else params.subconcepts
        distinct = _distinct(means[idx, m])
        k = max(1, min(want, len(idx) // 2, distinct))
        identical &= len(idx) > 1 and distinct == 1
        if k < want:
            notes.append(
                f"{'Background' if is_background else f'Part {m}'}: {k} sub-concepts instead of "
                f"{want} (present in {len(idx)} images)."
            )
        cents, codes[idx, m] = grouper.fit(means[idx, m], k, params.seed + 2 + m)
        subs.append(cents)
    if identical:
        raise DiscoveryDataError(
            f"All {n_images} images give identical features, so there is nothing to tell "
            "apart; discovery needs images that differ."
        )
    return subs, codes


@dataclass
class Learnt:
    """What fitting learnt before the streaming pass: the centroids, the masks and codes of
    the images it learnt from, and its evidence (a checkpoint a resumed run starts from)."""

    hierarchy: Hierarchy
    known_rows: np.ndarray  # (S,) images whose masks were decided while learning, sorted
    known_masks: np.ndarray  # (S, P)
    subset: np.ndarray  # images the sub-concepts learnt from, sorted
    subset_codes: np.ndarray  # (len(subset), M + 1)
    foreground: dict[str, Any]
    facing: dict[str, Any]
    notes: list[str]
    regions_from: int

    def tensors(self) -> dict[str, np.ndarray]:
        """Flat name -> array form (for safetensors); the rest is :meth:`evidence`."""
        out = {f"hierarchy.{k}": v for k, v in self.hierarchy.tensors().items()}
        out.update(
            known_rows=self.known_rows,
            known_masks=self.known_masks,
            subset=self.subset,
            subset_codes=self.subset_codes,
        )
        return out

    def evidence(self) -> dict[str, Any]:
        """The JSON part."""
        return {
            "foreground": self.foreground,
            "facing": self.facing,
            "notes": self.notes,
            "regions_from": self.regions_from,
        }

    @classmethod
    def from_parts(cls, t: dict[str, np.ndarray], evidence: dict[str, Any]) -> Learnt:
        prefix = "hierarchy."
        inner = {k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}
        return cls(
            Hierarchy.from_tensors(inner),
            t["known_rows"],
            t["known_masks"],
            t["subset"],
            t["subset_codes"],
            dict(evidence["foreground"]),
            dict(evidence["facing"]),
            list(evidence["notes"]),
            int(evidence["regions_from"]),
        )


def learn(
    feats: np.ndarray | FeatureSet,
    grid: tuple[int, int],
    params: HierarchyParams,
    grouper: Grouper | None = None,
) -> Learnt:
    """Learn all three levels' centroids from the patch features ``(N, P, D)`` of ``N``
    images, in memory bounded by ``params`` rather than by ``N``.

    ``feats`` is an array or a :class:`~creaturekit.discovery.features.FeatureSet` (read
    a few images at a time). Levels 1 and 2 learn from a seeded sample of at most
    ``params.sample_images`` images, level 3 from the part means of at most
    ``params.subconcept_points`` images per centroid. Smaller sets are learnt from whole.
    """
    grouper = grouper or KMeansGrouper()
    n, _, d = feats.shape
    if n < 2:
        raise DiscoveryDataError("Discovery needs at least 2 images; the project has 1.")
    notes: list[str] = []
    fitted = sample_rows(n, params.sample_images, params.seed, 1)
    regions = fit_regions(feats[fitted], grid, params, grouper, notes)
    h = regions.hierarchy
    # Level 3 learns from a sample's part means, kept in memory.
    most = max(params.subconcepts, params.bg_subconcepts)
    subset = sample_rows(n, params.subconcept_points * most, params.seed, 2)
    known = _Known(fitted, regions.masks)
    sub_means = np.zeros((len(subset), h.n_parts, d), np.float32)
    present = np.zeros((len(subset), h.n_parts), bool)
    for chunk, chunk_feats, masks in _stream_masks(
        feats, subset, grid, h, known, params.chunk_images
    ):
        at = np.searchsorted(subset, chunk)
        sub_means[at], present[at] = part_means(
            chunk_feats, masks, h.n_parts, grid if h.interior else None
        )
        known.add(chunk, masks)
    h.sub_centroids, subset_codes = fit_subconcepts(sub_means, present, params, grouper, notes)
    rows, masks = known.arrays()
    return Learnt(
        h,
        rows,
        masks,
        subset,
        subset_codes,
        regions.foreground,
        regions.facing,
        notes,
        len(fitted),
    )


class _Known:
    """Masks already decided, by image row."""

    def __init__(self, rows: np.ndarray, masks: np.ndarray) -> None:
        self.masks = dict(zip(rows.tolist(), masks, strict=True))

    def add(self, rows: np.ndarray, masks: np.ndarray) -> None:
        self.masks.update(zip(rows.tolist(), masks, strict=True))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        rows = np.array(sorted(self.masks), np.int64)
        return rows, np.stack([self.masks[int(r)] for r in rows])


def _stream_masks(
    feats: np.ndarray | FeatureSet,
    rows: np.ndarray,
    grid: tuple[int, int],
    h: Hierarchy,
    known: _Known,
    chunk_images: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(rows, features, masks)`` of ``rows``' images, ``chunk_images`` at a time: masks
    already ``known`` are kept, the others coded with ``h``."""
    steps = range(0, len(rows), chunk_images)
    for s in track(steps, "Coding images", total=len(steps)):
        chunk = rows[s : s + chunk_images]
        chunk_feats = feats[chunk]
        masks = np.empty(chunk_feats.shape[:2], np.uint8)
        todo = []
        for i, r in enumerate(chunk.tolist()):
            if r in known.masks:
                masks[i] = known.masks[r]
            else:
                todo.append(i)
        if todo:
            masks[todo] = encode_masks(h, chunk_feats[todo], grid)
        yield chunk, chunk_feats, masks


def code_all(
    feats: np.ndarray | FeatureSet,
    grid: tuple[int, int],
    learnt: Learnt,
    chunk_images: int = 256,
) -> tuple[ImageCodes, FitReport]:
    """One streaming pass that codes every image with ``learnt``'s centroids (keeping the
    masks and codes decided while learning), and the report of the whole fit."""
    h = learnt.hierarchy
    n = len(feats)
    fixed = np.full((n, h.n_parts), _UNDECIDED, np.int64)
    fixed[learnt.subset] = learnt.subset_codes
    known = _Known(learnt.known_rows, learnt.known_masks)
    coded = _code_pass(feats, grid, h, known, fixed, chunk_images)
    masks, present, codes = coded.masks, coded.present, coded.codes
    notes = list(learnt.notes)
    if learnt.regions_from < n or len(learnt.subset) < n:
        notes.append(
            f"Foreground and parts were learnt from a seeded sample of {learnt.regions_from:,} "
            f"of the {n:,} images, sub-concepts from {len(learnt.subset):,}; every image was "
            "then coded with the fitted centroids."
        )
    bg = h.n_parts - 1
    foreground = dict(learnt.foreground)
    foreground["foreground_share"] = round(float(np.mean(masks != bg)), 4)
    foreground["images_without_foreground"] = int((masks == bg).all(axis=1).sum())
    part_info = [
        Part(
            index=m,
            is_background=m == bg,
            subconcepts=len(h.sub_centroids[m]),
            coverage=round(float(np.mean(masks == m)), 4),
            presence=round(float(present[:, m].mean()), 4),
            unassigned_images=int(np.sum(present[:, m] & (codes[:, m] < 0))),
        )
        for m in range(h.n_parts)
    ]
    scale = {
        "images": n,
        "regions_from": learnt.regions_from,
        "subconcepts_from": len(learnt.subset),
    }
    report = FitReport(foreground, part_info, notes, dict(learnt.facing), scale)
    return coded, report


#: In ``_code_pass``'s ``fixed`` codes: no code decided yet (the image is coded).
_UNDECIDED = UNASSIGNED - 1


def _code_pass(
    feats: np.ndarray | FeatureSet,
    grid: tuple[int, int],
    h: Hierarchy,
    known: _Known,
    fixed: np.ndarray | None,
    chunk_images: int,
) -> ImageCodes:
    """Masks, codes and presence of every image, ``chunk_images`` at a time; ``known``
    masks and ``fixed`` codes (``(N, M + 1)``, ``_UNDECIDED`` elsewhere) are kept."""
    n, p, _ = feats.shape
    masks = np.empty((n, p), np.uint8)
    present = np.zeros((n, h.n_parts), bool)
    codes = np.full((n, h.n_parts), UNASSIGNED, np.int64)
    for chunk, chunk_feats, chunk_masks in _stream_masks(
        feats, np.arange(n), grid, h, known, chunk_images
    ):
        masks[chunk] = chunk_masks
        means, present[chunk] = part_means(
            chunk_feats, chunk_masks, h.n_parts, grid if h.interior else None
        )
        codes[chunk] = sub_codes(h, means, present[chunk])
        if fixed is not None:
            keep = fixed[chunk] != _UNDECIDED
            codes[chunk] = np.where(keep, fixed[chunk], codes[chunk])
    return ImageCodes(masks=masks, codes=codes, present=present)


def code_images(
    feats: np.ndarray | FeatureSet, grid: tuple[int, int], h: Hierarchy, chunk_images: int = 256
) -> ImageCodes:
    """Code every image with fitted centroids in one streaming pass: masks, codes and
    presence (no part features, so memory does not grow with the features)."""
    return _code_pass(
        feats, grid, h, _Known(np.zeros(0, np.int64), np.zeros((0, 0))), None, chunk_images
    )


def fit(
    feats: np.ndarray | FeatureSet,
    grid: tuple[int, int],
    params: HierarchyParams,
    grouper: Grouper | None = None,
) -> tuple[Hierarchy, ImageCodes, FitReport]:
    """:func:`learn` the centroids, then :func:`code_all` images: memory bounded by
    ``params`` rather than by the number of images."""
    learnt = learn(feats, grid, params, grouper)
    coding, report = code_all(feats, grid, learnt, params.chunk_images)
    return learnt.hierarchy, coding, report
