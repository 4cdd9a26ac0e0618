"""The usual personalisation baseline: one token per whole-image cluster, no parts.

Every image is coded by ONE k-means cluster of its whole-image feature, the mean of its
unit patch features from the project's own discovery backend (read from the feature
cache ``discover`` keeps). The baseline is stored like any discovery result, with a
single part that covers every patch (so it is the part every image has: the background
part, ``bg``) and whose K codes are the clusters, in a sibling project over the same
images. The ordinary trainer, mixer and evaluation therefore run on it unchanged, each
training caption holds exactly one part token, and its discoverer codes a new image by
the cluster nearest to its whole-image feature.

A requested part combination is served by the cluster whose member images match it
best: the most requested (part, code) pairs per member image on average, ties going to
the larger cluster. The baseline can only choose which kind of seen image to draw; it
has no way to compose parts of different clusters.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from creaturekit.discovery.hierarchy import Coding, FitReport, Hierarchy, Part, part_means
from creaturekit.discovery.kmeans import spherical_kmeans
from creaturekit.errors import CreatureKitError
from creaturekit.evaluation.combinations import Combination
from creaturekit.project import Project


def fit_image_clusters(
    feats: np.ndarray, like: Hierarchy, clusters: int, seed: int
) -> tuple[Hierarchy, Coding, FitReport]:
    """Cluster the whole-image features of patch features ``(N, P, D)`` into ``clusters``.

    The hierarchy has no foreground part, so coding puts every patch in the one part
    and its code is the nearest cluster. ``like`` (the project's fitted hierarchy) gives
    the feature layout (position weight, appearance channels).
    """
    n, p, _ = feats.shape
    masks = np.zeros((n, p), np.uint8)  # every patch belongs to part 0
    means, present = part_means(feats, masks, 1)
    centroids, labels = spherical_kmeans(means[:, 0], clusters, seed)
    hierarchy = Hierarchy(
        fg_threshold=float("-inf"),  # no patch is foreground
        part_centroids=np.zeros((0, like.part_centroids.shape[1]), np.float32),
        sub_centroids=[centroids],
        position_weight=like.position_weight,
        appearance_dims=like.appearance_dims,
    )
    coding = Coding(
        masks=masks, codes=labels[:, None].astype(np.int64), part_features=means, present=present
    )
    report = FitReport(
        foreground={"rule": "none: one part covers the whole image (image-cluster baseline)"},
        parts=[Part(0, is_background=True, subconcepts=len(centroids), coverage=1.0, presence=1.0)],
        notes=[
            f"Image-cluster baseline: {len(centroids)} k-means clusters of whole-image "
            "features, one token per image."
        ],
    )
    return hierarchy, coding, report


def image_cluster_project(
    project: Project, folder: str | Path, clusters: int, seed: int = 42
) -> Project:
    """A project in ``folder`` over ``project``'s images whose discovery is the baseline.

    Its settings are a copy of ``project``'s and its ``images`` folder is a link to
    ``project``'s, so both have the same image set; the baseline discovery is rebuilt
    on every call (same ``seed``, same clusters).
    """
    from creaturekit.discovery.discover import load_discoverer, load_result
    from creaturekit.discovery.result import FEATURES_DIR, build_result, write_result

    load_result(project)  # a clear error when the project has no discovery yet
    discoverer = load_discoverer(project.discovery_dir)
    records = project.images()
    started = time.perf_counter()
    feats = discoverer.extract(
        [project.image_path(r) for r in records], project.discovery_dir / FEATURES_DIR
    )
    fitted = fit_image_clusters(feats, discoverer.hierarchy_, clusters, seed)
    discoverer.hierarchy_, discoverer.coding_, discoverer.report_ = fitted
    discoverer.timing_ = {
        "clustering_s": round(time.perf_counter() - started, 3),
        "images": len(records),
    }
    root = Path(folder).expanduser().resolve()
    baseline = Project(root=root, config=copy.deepcopy(project.config))
    root.mkdir(parents=True, exist_ok=True)
    source = project.images_dir.resolve()
    if not baseline.images_dir.exists():
        baseline.images_dir.symlink_to(source, target_is_directory=True)
    elif baseline.images_dir.resolve() != source:
        raise CreatureKitError(
            f"{root} already holds other images; choose another folder for the baseline."
        )
    with baseline.lock("discover"):
        baseline.save_config()
        baseline.discovery_dir.mkdir(exist_ok=True)
        result = build_result(discoverer, records, project.images_hash())
        write_result(baseline.discovery_dir, result, discoverer)
    return baseline


@dataclass
class ClusterServing:
    """Turns a requested part combination into the baseline's one-token request."""

    members: list[list[Combination]]  # per cluster: its member images' part codes
    part: str  # the baseline's part name in its run's vocabulary

    @classmethod
    def from_projects(cls, project: Project, baseline: Project) -> ClusterServing:
        """Cluster membership of every image of ``project``'s discovery (by image id)."""
        from creaturekit.discovery.discover import load_result

        clusters = load_result(baseline)
        cluster_of = {int(row["id"]): int(row["codes"]["0"]) for row in clusters.codes}
        members: list[list[Combination]] = [[] for _ in range(clusters.parts[0].subconcepts)]
        for row in load_result(project).codes:
            codes = {int(m): int(k) for m, k in row["codes"].items()}
            members[cluster_of[int(row["id"])]].append(codes)
        part = clusters.parts[0]
        return cls(members, baseline.config.part_name(part.index, part.is_background))

    def cluster(self, combo: Combination) -> int:
        """The cluster whose members share the most requested codes on average."""

        def match(c: int) -> tuple[float, int]:
            images = self.members[c]
            shared = sum(codes.get(m) == k for codes in images for m, k in combo.items())
            return shared / max(1, len(images)), len(images)

        return max(range(len(self.members)), key=match)

    def __call__(self, combo: Combination) -> dict[str, list[int]]:
        return {self.part: [self.cluster(combo)]}


@dataclass
class ServedCreatures:
    """The baseline's run drawing each requested combination as the cluster that serves it
    (what ``evaluate(creatures=...)`` scores over the project's own combinations)."""

    mixer: Any  # a creaturekit.generation.mix.Mixer of the baseline's run
    serving: ClusterServing

    @property
    def name(self) -> str:
        return str(self.mixer.run.path.name)

    def __call__(
        self, combo: Combination, n: int, seed: int, **generation: Any
    ) -> list[Image.Image]:
        return list(self.mixer(self.serving(combo), n=n, seed=seed, **generation).images)
