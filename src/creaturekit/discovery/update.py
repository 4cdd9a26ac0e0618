"""``discover --update``: code images added since discovery with the existing centroids.

Refitting learns new centroids, which renumbers parts and sub-concepts, so runs trained
on the old result no longer fit it; an update keeps the centroids (``fitted_stamp`` names
the fit they come from), so those runs still mix. It is advised to refit when the new
images are a large share of the set (the centroids never saw them) or when their
foreground share drifts from the fitted set's (they do not look like what was learnt).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from creaturekit.discovery.result import (
    FEATURES_DIR,
    DiscoveryResult,
    caption,
    read_result,
    staging_folder,
    write_result,
)
from creaturekit.project import Project

#: New images beyond this share of the whole set: a refit is advised.
REFIT_SHARE = 0.25
#: New images whose foreground share differs from the fitted set's by more than this.
FOREGROUND_DRIFT = 0.10


@dataclass
class Update:
    """What ``update`` did: the stored result, how many images were added and removed,
    and why a refit is advised (empty: it is not)."""

    result: DiscoveryResult
    added: int
    removed: int
    advice: list[str]


def refit_advice(added: int, total: int, new_share: float, fitted_share: float) -> list[str]:
    """Why a refit is advised after coding ``added`` new images of ``total``, whose
    foreground share is ``new_share`` where the fitted set's was ``fitted_share``."""
    advice = []
    if total and added / total > REFIT_SHARE:
        advice.append(
            f"{added} of the {total} images ({added / total:.0%}) are new: the centroids were "
            "learnt without them."
        )
    if added and abs(new_share - fitted_share) > FOREGROUND_DRIFT:
        advice.append(
            f"The new images' foreground share ({new_share:.0%}) differs from the fitted "
            f"images' ({fitted_share:.0%}): they may not look like what discovery learnt from."
        )
    return advice


def update(project: Project, *, report: bool = True) -> Update:
    """Code the project's images that the stored result lacks with its centroids, drop
    the images no longer in the project, and store the result (atomically)."""
    from creaturekit.discovery.discover import load_discoverer

    folder = project.discovery_dir
    old = read_result(folder)
    discoverer = load_discoverer(folder)
    records = project.images()
    where = {(row["id"], row["file"]): i for i, row in enumerate(old.codes)}
    new = [r for r in records if (r.id, r.file) not in where]
    removed = len(old.codes) - (len(records) - len(new))
    if not new and not removed:
        return Update(old, 0, 0, [])
    start = time.perf_counter()
    paths = [project.image_path(r) for r in new]
    coded = discoverer.code(paths, folder / FEATURES_DIR) if new else None
    h, w = old.grid
    fresh = iter(range(len(new)))
    rows: list[dict[str, Any]] = []
    masks = np.empty((len(records), h, w), np.uint8)
    for i, record in enumerate(records):
        if (record.id, record.file) in where:
            j = where[(record.id, record.file)]
            rows.append(old.codes[j])
            masks[i] = old.masks[j]
            continue
        j = next(fresh)
        assert coded is not None  # there are new images
        present = {str(m): int(k) for m, k in enumerate(coded.codes[j]) if k >= 0}
        rows.append(
            {"id": record.id, "file": record.file, "codes": present, "caption": caption(present)}
        )
        masks[i] = coded.masks[j].reshape(h, w)
    bg = old.background_index
    new_share = float(np.mean(coded.masks != bg)) if coded is not None else 0.0
    fitted_share = float(old.foreground.get("foreground_share", new_share))
    advice = refit_advice(len(new), len(records), new_share, fitted_share)
    parts = [
        replace(
            part,
            coverage=round(float(np.mean(masks == part.index)), 4),
            presence=round(float((masks == part.index).any(axis=(1, 2)).mean()), 4),
        )
        for part in old.parts
    ]
    note = (
        f"Updated: {len(new)} new image(s) coded with the existing centroids, {removed} "
        "removed; " + (" ".join(advice) + " A refit is advised." if advice else "no refit needed.")
    )
    result = replace(
        old,
        parts=parts,
        notes=[*old.notes, note],
        timing={**old.timing, "update_s": round(time.perf_counter() - start, 3)},
        images_hash=project.images_hash(),
        stamp=f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}",
        codes=rows,
        masks=masks,
        scale={**old.scale, "images": len(records), "updated_with": len(new)},
    )
    extra: tuple[str, ...] = ()
    if report:
        from creaturekit.discovery.report import write_report

        extra = write_report(staging_folder(folder, result.stamp), project, result)
    write_result(folder, result, discoverer, extra_dirs=extra)
    return Update(result, len(new), removed, advice)
