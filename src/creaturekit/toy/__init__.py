"""The toy world: drawn creatures of correlated part variants, with full ground truth.

It is the offline data set of the demo and the benchmark of discovery, fitting and
mixing (see docs/toy-world.md). The oracle that judges toy images lives in
:mod:`creaturekit.toy.oracle` (it needs torch); discovery figures in
:mod:`creaturekit.toy.discovery_scores`.
"""

from __future__ import annotations

from creaturekit.toy.dataset import ToyGroundTruth, create_toy_project, load_ground_truth
from creaturekit.toy.draw import Drawing, render
from creaturekit.toy.world import N_VARIANTS, PARTS, SCENES, World, is_novel, make_world

__all__ = [
    "N_VARIANTS",
    "PARTS",
    "SCENES",
    "Drawing",
    "ToyGroundTruth",
    "World",
    "create_toy_project",
    "is_novel",
    "load_ground_truth",
    "make_world",
    "render",
]
