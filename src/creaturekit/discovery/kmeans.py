"""Seeded, memory-bounded spherical k-means (cosine distance) over feature rows.

The rows to cluster are copied once at unit length (float32 up to 2 GiB, else fp16)
and then visited in chunks, converted to float32 chunk by chunk, so memory is bounded
by about twice the fp16 input plus ``O(chunk x (D + k))``. Every Lloyd pass visits ALL
rows; the cost of a pass is linear in the number of rows. Initialisation is k-means++ on a seeded
sample, so results are deterministic for a given seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from creaturekit.discovery.errors import DiscoveryDataError

CHUNK_ROWS = 65_536
INIT_SAMPLE = 20_000
FLOAT32_BUDGET = 2 << 30  # bytes; larger row sets are held as fp16


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-8)


def _unit_rows(x: np.ndarray, rows: np.ndarray | None, start: int, stop: int) -> Any:
    """Rows ``start:stop`` (of the subset ``rows``) as a unit-length float32 torch tensor."""
    import torch

    part = x[start:stop] if rows is None else x[rows[start:stop]]
    return torch.nn.functional.normalize(torch.from_numpy(np.asarray(part)).float(), dim=1)


def assign(
    x: np.ndarray, centroids: np.ndarray, rows: np.ndarray | None = None, chunk: int = CHUNK_ROWS
) -> np.ndarray:
    """Index of the most similar centroid for every row (of ``rows`` when given)."""
    import torch

    n = len(x) if rows is None else len(rows)
    c = torch.from_numpy(normalize(centroids))
    out = [
        torch.argmax(_unit_rows(x, rows, s, s + chunk) @ c.T, dim=1).numpy()
        for s in range(0, n, chunk)
    ]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def _kmeans_pp(sample: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = [sample[rng.integers(len(sample))]]
    dist = 1.0 - sample @ centers[0]
    for _ in range(1, k):
        weights = np.clip(dist, 0.0, None)
        total = float(weights.sum())
        if total <= 1e-12:
            raise DiscoveryDataError(
                f"The features hold fewer than {k} distinct values, so {k} clusters cannot be "
                "formed; use fewer clusters or more varied images."
            )
        centers.append(sample[rng.choice(len(sample), p=weights / total)])
        dist = np.minimum(dist, 1.0 - sample @ centers[-1])
    return np.stack(centers)


def _lloyd(
    unit: Any, centroids: Any, max_iter: int, tol: float, chunk: int
) -> tuple[Any, Any, float]:
    """Lloyd passes over the unit rows from ``centroids``: centroids, labels, objective
    (the summed cosine of every row to its centroid)."""
    import torch

    k, n = len(centroids), len(unit)
    labels = torch.zeros(n, dtype=torch.int64)
    for _ in range(max_iter):
        sums = torch.zeros_like(centroids)
        for s in range(0, n, chunk):
            part = unit[s : s + chunk].float()
            labels[s : s + chunk] = torch.argmax(part @ centroids.T, dim=1)
            sums.index_add_(0, labels[s : s + chunk], part)
        counts = torch.bincount(labels, minlength=k)
        new = torch.where(
            counts[:, None] > 0, torch.nn.functional.normalize(sums, dim=1), centroids
        )
        shift = float(torch.max(1.0 - (new * centroids).sum(dim=1)))
        centroids = new
        if shift < tol:
            break
    objective = 0.0
    for s in range(0, n, chunk):
        best = torch.max(unit[s : s + chunk].float() @ centroids.T, dim=1)
        labels[s : s + chunk] = best.indices
        objective += float(best.values.double().sum())
    return centroids, labels, objective


def spherical_kmeans(
    x: np.ndarray,
    k: int,
    seed: int,
    rows: np.ndarray | None = None,
    max_iter: int = 30,
    tol: float = 1e-4,
    chunk: int = CHUNK_ROWS,
    n_init: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the rows of ``x`` (or the subset ``rows``) into ``k`` groups by cosine.

    ``n_init`` seeded k-means++ starts are run to convergence and the tightest result
    (highest summed cosine to the centroids) is kept. Returns unit-length centroids
    ``(k, D)`` and each row's label, clusters ordered by decreasing size. Deterministic
    for a given ``seed``.
    """
    import torch

    n = len(x) if rows is None else len(rows)
    if n < k:
        raise DiscoveryDataError(f"Cannot form {k} clusters from {n} feature vectors.")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, size=min(n, INIT_SAMPLE), replace=False))
    sample = normalize(x[pick] if rows is None else x[rows[pick]])
    dtype = torch.float32 if n * x.shape[1] * 4 <= FLOAT32_BUDGET else torch.float16
    unit = torch.empty((n, x.shape[1]), dtype=dtype)
    for s in range(0, n, chunk):
        unit[s : s + chunk] = _unit_rows(x, rows, s, s + chunk)
    runs = (
        _lloyd(unit, torch.from_numpy(_kmeans_pp(sample, k, rng)), max_iter, tol, chunk)
        for _ in range(max(1, n_init))
    )
    centroids, labels, _ = max(runs, key=lambda run: run[2])
    return _by_size(centroids.numpy(), labels.numpy(), k)


def _by_size(centroids: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids and labels renumbered so that clusters go by decreasing size."""
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    remap = np.empty(k, np.int64)
    remap[order] = np.arange(k)
    return centroids[order], remap[labels]


#: faiss trains on at most this many rows per centroid (a seeded sample, as faiss does).
FAISS_POINTS_PER_CENTROID = 1024


def faiss_kmeans(
    x: np.ndarray,
    k: int,
    seed: int,
    rows: np.ndarray | None = None,
    max_iter: int = 30,
    n_init: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`spherical_kmeans` on faiss (GPUs when a faiss GPU build sees any).

    faiss trains its ``n_init`` starts on a seeded sample of at most
    ``FAISS_POINTS_PER_CENTROID`` rows per centroid, keeps the best, and every row is then
    labelled by its nearest centroid. Same seed, same centroids.
    """
    import faiss

    n = len(x) if rows is None else len(rows)
    if n < k:
        raise DiscoveryDataError(f"Cannot form {k} clusters from {n} feature vectors.")
    unit = np.empty((n, x.shape[1]), np.float32)
    for s in range(0, n, CHUNK_ROWS):
        unit[s : s + CHUNK_ROWS] = _unit_rows(x, rows, s, s + CHUNK_ROWS).numpy()
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=max_iter,
        nredo=max(1, n_init),
        spherical=True,
        seed=seed,
        max_points_per_centroid=FAISS_POINTS_PER_CENTROID,
        gpu=faiss.get_num_gpus() > 0,
        verbose=False,
    )
    km.train(unit)
    centroids = normalize(np.asarray(km.centroids))
    return _by_size(centroids, assign(unit, centroids), k)
