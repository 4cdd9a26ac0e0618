"""``dino-hdbscan``: DINO patch features; HDBSCAN groups the part and sub-concept levels.

The number of parts and of sub-concepts is chosen by density (``--parts`` and
``--subconcepts`` are ignored); vectors HDBSCAN calls noise are "unassigned" (mask value
255, no code). Patches are many, so the part level is fitted on a seeded sample and the
other patches go to the nearest part centroid. The fg/bg level is the shared one.
"""

from __future__ import annotations

from creaturekit_hdbscan.backend import DinoHDBSCAN, HDBSCANGrouper

__all__ = ["DinoHDBSCAN", "HDBSCANGrouper"]
