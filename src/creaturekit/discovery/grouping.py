"""How a level's vectors are grouped: k-means by default; backends may bring their own.

A grouper returns centroids and one label per vector; label ``-1`` means "unassigned"
(noise, for density-based groupers). New vectors are always coded by the nearest
centroid (:func:`creaturekit.discovery.kmeans.assign`), whatever grouped the training set.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from creaturekit.discovery.kmeans import faiss_kmeans, spherical_kmeans

UNASSIGNED = -1


class Grouper(Protocol):
    """Groups the rows of ``x`` (or the subset ``rows``) into about ``k`` clusters."""

    def fit(
        self, x: np.ndarray, k: int, seed: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Centroids ``(k', D)`` and a label in ``[-1, k')`` per row."""
        ...


#: Work budget (rows x clusters) that sets how many k-means starts a level gets by default.
START_WORK = 1 << 17


def default_starts(n_rows: int, k: int) -> int:
    """k-means starts for ``n_rows`` vectors and ``k`` clusters: as many as ``START_WORK``
    allows, between 8 and 64. Small sets (the per-image part means of a few hundred
    images) get many cheap starts; patch sets and CUB-scale sub-concept levels get 8."""
    return int(np.clip(START_WORK // max(1, n_rows * k), 8, 64))


class KMeansGrouper:
    """Spherical k-means with exactly ``k`` clusters (the reference method), the tightest
    of ``n_init`` seeded starts (default: :func:`default_starts`), on ``engine``:
    ``"torch"`` (:func:`spherical_kmeans`) or ``"faiss"`` (:func:`faiss_kmeans`)."""

    def __init__(self, n_init: int | None = None, engine: str = "torch") -> None:
        self.n_init = n_init
        self.engine = engine

    def fit(
        self, x: np.ndarray, k: int, seed: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        starts = self.n_init or default_starts(len(x) if rows is None else len(rows), k)
        kmeans = faiss_kmeans if self.engine == "faiss" else spherical_kmeans
        return kmeans(x, k, seed, rows=rows, n_init=starts)
