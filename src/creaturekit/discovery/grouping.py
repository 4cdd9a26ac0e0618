"""How a level's vectors are grouped: k-means by default; backends may bring their own.

A grouper returns centroids and one label per vector; label ``-1`` means "unassigned"
(noise, for density-based groupers). New vectors are always coded by the nearest
centroid (:func:`creaturekit.discovery.kmeans.assign`), whatever grouped the training set.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from creaturekit.discovery.kmeans import spherical_kmeans

UNASSIGNED = -1


class Grouper(Protocol):
    """Groups the rows of ``x`` (or the subset ``rows``) into about ``k`` clusters."""

    def fit(
        self, x: np.ndarray, k: int, seed: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Centroids ``(k', D)`` and a label in ``[-1, k')`` per row."""
        ...


class KMeansGrouper:
    """Spherical k-means with exactly ``k`` clusters (the reference method), the tightest
    of ``n_init`` seeded starts."""

    def __init__(self, n_init: int = 8) -> None:
        self.n_init = n_init

    def fit(
        self, x: np.ndarray, k: int, seed: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return spherical_kmeans(x, k, seed, rows=rows, n_init=self.n_init)
