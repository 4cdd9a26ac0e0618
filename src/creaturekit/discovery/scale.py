"""How discovery runs at scale: the memory bounds and the k-means engine.

None of it changes what a stored result means (parts, codes and masks are read the same
way), so it is not part of a discoverer's options; ``result.json`` records it (``scale``).
"""

from __future__ import annotations

from dataclasses import dataclass

from creaturekit.errors import ConfigError

#: k-means engines: creaturekit's own (torch, CPU or GPU) and faiss (``pip install
#: creaturekit[faiss]``; GPU and multi-GPU with a faiss GPU build).
KMEANS_ENGINES = ("torch", "faiss")


@dataclass(frozen=True)
class Scale:
    """Memory bounds and engine of one discovery run."""

    sample_images: int = 1000  # images (seeded sample) the fg/bg and part levels learn from
    subconcept_points: int = 64  # images per sub-concept centroid (seeded sample) at most
    kmeans: str = "torch"  # k-means engine, one of KMEANS_ENGINES

    def check(self) -> Scale:
        """``self``, or a :class:`ConfigError` naming the bad value."""
        if self.kmeans not in KMEANS_ENGINES:
            raise ConfigError(
                f"Unknown k-means engine {self.kmeans!r}; use one of {', '.join(KMEANS_ENGINES)}."
            )
        for key in ("sample_images", "subconcept_points"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}.")
        if self.kmeans == "faiss":
            try:
                import faiss  # noqa: F401
            except ImportError:
                raise ConfigError(
                    'The k-means engine "faiss" is not installed; install it with '
                    "`pip install 'creaturekit[faiss]'` (or faiss-gpu for GPUs)."
                ) from None
        return self
