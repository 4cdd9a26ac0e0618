"""A toy project: drawn creatures imported through the normal manifest, plus ground truth.

Species images form the "train" split; a few drawings of every novel combination form
the "test" split. Under ``images/toy/`` the project keeps the catalogue (``world.json``),
one ground-truth row per image (``ground_truth.jsonl``) and a label-map PNG per image
(``masks/<id>.png``: 0 = background, i + 1 = part i). See docs/toy-world.md.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from creaturekit import constants as C
from creaturekit import fsutil
from creaturekit.config import Config
from creaturekit.errors import StageMissingError
from creaturekit.images import ImageRecord, content_hash
from creaturekit.paths import inside
from creaturekit.progress import track
from creaturekit.project import Project, init_project
from creaturekit.toy.draw import render
from creaturekit.toy.world import N_VARIANTS, PARTS, SCENES, ToyWorldError, World, make_world

DATASET = "toy"
SIZES = range(32, 513)
"""Accepted image sides."""
DEFAULT_SIZE = 224
"""Side of a toy project's images: big enough for ImageNet/DINO features to see the
parts' shapes and patterns (discovery); fit and the toy base model work at 64 px."""
TOY_NEGATIVE = ""
"""Negative prompt of toy projects' mixes: the toy base model learned classifier-free
guidance from empty captions and never saw the words of SD's usual negative prompt
(their embeddings are untrained), so with them guidance pushes away from an arbitrary
point; empty, novel parts are drawn right more often (docs/results.md, "Negative prompt")."""
TOY_GUIDANCE = 5.0
"""Guidance of toy projects' mixes: with the codes started apart and the purer
discovery, the learned part tokens are drawn right more often at 5 than at SD's 7.5, on
seven of eight (fit, draw) pairs (docs/results.md, "The last levers")."""
TOY_TEMPLATE = "{parts}"
"""Prompt of toy projects' mixes: the part tokens alone, one of the two caption forms of
training. The toy base model never saw the template's other words ("a photo of"): their
embeddings are untrained, and with them the background is drawn right less often (73%
against 83% without, over four (fit, draw) pairs; docs/results.md, "Prompt without
untrained words")."""
IMAGE_STREAM = 10
"""Seed stream of the data set's images (the oracle's training uses other streams)."""


def toy_settings(config: Config, size: int) -> None:
    """Point ``config`` at the offline defaults: toy backend choices, part and variant counts."""
    config.project.category = "creature"
    config.images.min_side = min(config.images.min_side, size)
    config.discover.backend = "effnet-kmeans"
    config.discover.parts = len(PARTS)
    config.discover.subconcepts = N_VARIANTS
    config.discover.bg_subconcepts = len(SCENES)
    # Few sub-concepts over many images: learn them from every image (faiss's 256 points
    # per centroid), as before sampling existed; a sample costs purity (docs/discovery.md).
    config.discover.subconcept_points = 256
    config.fit.preset = "toy"
    config.fit.model = "toy"
    config.mix.negative = TOY_NEGATIVE
    config.mix.guidance = TOY_GUIDANCE
    config.mix.template = TOY_TEMPLATE
    config.eval.image_model = "discovery"  # no DINO, CLIP or Inception weights offline
    config.eval.fid_model = "discovery"
    config.eval.clip_model = ""


@dataclass(frozen=True)
class _Item:
    """One image to draw: its combination, label, split and species/novel index."""

    combo: tuple[int, ...]
    label: str
    split: str
    species: int | None
    novel: int | None
    number: int  # index of the drawing within its label


def _plan(world: World, per_species: int, novel_images: int) -> list[_Item]:
    items = [
        _Item(combo, world.species_name(s), "train", s, None, k)
        for s, combo in enumerate(world.species)
        for k in range(per_species)
    ]
    items += [
        _Item(combo, f"novel-{j:02d}", "test", None, j, k)
        for j, combo in enumerate(world.novel)
        for k in range(novel_images)
    ]
    return items


def _write_png(path: Path, array: np.ndarray) -> bytes:
    """Write ``array`` as a lossless PNG (atomically, without fsync: files are many)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    with fsutil.atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return buf.getvalue()


def _draw_all(
    images_dir: Path, world: World, items: list[_Item], size: int, first_id: int
) -> Iterator[tuple[ImageRecord, dict[str, Any], dict[str, tuple[float, float]]]]:
    """Draw and write every item; yield its manifest record, ground-truth row and keypoints."""
    for n, item in enumerate(track(items, "Drawing toy creatures", total=len(items))):
        image_id = first_id + n
        rng = np.random.default_rng([world.seed, IMAGE_STREAM, n])
        scene = int(rng.integers(0, len(SCENES)))
        drawing = render(item.combo, scene, size, rng)
        file = f"{C.TOY_DIR}/{item.label}/{image_id:05d}.png"
        mask = f"{C.TOY_DIR}/{C.TOY_MASKS_DIR}/{image_id:05d}.png"
        data = _write_png(images_dir / file, drawing.image)
        _write_png(images_dir / mask, drawing.mask)
        record = ImageRecord(
            id=image_id,
            file=file,
            sha256=hashlib.sha256(data).hexdigest(),
            width=size,
            height=size,
            source=f"toy-seed{world.seed}/{item.label}/{item.number:03d}",
            dataset=DATASET,
            split=item.split,
            label=item.label,
        )
        truth = {
            "id": image_id,
            "file": file,
            "mask": mask,
            "split": item.split,
            "species": item.species,
            "novel": item.novel,
            "variants": dict(zip(PARTS, item.combo, strict=True)),
            "visible": dict(zip(PARTS, drawing.visible, strict=True)),
            "scene": scene,
            "occluded": drawing.occluded,
            "pose": {
                "x": round(drawing.pose.x, 4),
                "y": round(drawing.pose.y, 4),
                "scale": round(drawing.pose.scale, 4),
                "angle": round(drawing.pose.angle, 3),
                "flip": drawing.pose.flip,
            },
        }
        yield record, truth, part_keypoints(drawing.mask)


def part_keypoints(mask: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per visible part, its pixel nearest the part's centroid (x, y at the pixel centre).

    A toy image's counterpart of CUB's annotated keypoints: ``parts auto-name`` names the
    discovered parts after them, and ``eval`` scores discovery by the keypoint protocol.
    """
    points = {}
    for i, part in enumerate(PARTS):
        ys, xs = np.nonzero(mask == i + 1)
        if len(ys):
            j = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
            points[part] = (float(xs[j]) + 0.5, float(ys[j]) + 0.5)
    return points


def create_toy_project(
    path: str | Path,
    *,
    species: int = 24,
    per_species: int = 40,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    novel_images: int = 2,
    name: str | None = None,
    force: bool = False,
) -> Project:
    """Create a ready toy project: drawn images, ground truth and offline settings.

    With ``force`` an existing project gets a fresh toy set (replacing any earlier
    one; other images and the settings are kept).
    """
    if size not in SIZES:
        raise ToyWorldError(f"Toy images are {SIZES.start} to {SIZES.stop - 1} px, not {size}.")
    if per_species < 1 or novel_images < 0 or seed < 0:
        raise ToyWorldError("Use at least 1 image per species, no negative counts or seeds.")
    world = make_world(species, seed=seed)
    fresh = not (Path(path).expanduser() / C.CONFIG_NAME).exists()
    project = init_project(path, name=name, force=force)
    if fresh:
        toy_settings(project.config, size)
        project.save_config()
    images_dir = project.images_dir
    with project.lock("init"):
        kept = [r for r in project.manifest() if r.dataset != DATASET]
        _remove_toy_set(images_dir, [r for r in project.manifest() if r.dataset == DATASET])
        first_id = max((r.id for r in kept), default=0) + 1
        items = _plan(world, per_species, novel_images)
        records, truth = [], []
        kept_ids = {r.id for r in kept}
        points = {i: p for i, p in project.keypoints().items() if i in kept_ids}
        for record, row, keypoints in _draw_all(images_dir, world, items, size, first_id):
            records.append(record)
            truth.append(row)
            points[record.id] = keypoints
        toy_dir = images_dir / C.TOY_DIR
        fsutil.write_json(
            toy_dir / C.TOY_WORLD_NAME,
            {
                **world.to_dict(),
                "size": size,
                "per_species": per_species,
                "novel_images": novel_images,
                "mask_values": {"0": "bg", **{str(i + 1): p for i, p in enumerate(PARTS)}},
                "images_hash": content_hash(records),
            },
        )
        fsutil.write_jsonl(toy_dir / C.TOY_GROUND_TRUTH_NAME, truth)
        fsutil.write_jsonl(images_dir / C.MANIFEST_NAME, [r.__dict__ for r in [*kept, *records]])
        project.save_keypoints(points)
    return project


def _remove_toy_set(images_dir: Path, toy: list[ImageRecord]) -> None:
    """Delete an earlier toy set (images/toy/), refusing if it holds files the toy set did not."""
    folder = images_dir / C.TOY_DIR
    ours = {f"{C.TOY_DIR}/{name}" for name in (C.TOY_WORLD_NAME, C.TOY_GROUND_TRUTH_NAME)}
    ours |= {r.file for r in toy} | {f"{C.TOY_DIR}/{C.TOY_MASKS_DIR}/{r.id:05d}.png" for r in toy}
    files = (p.relative_to(images_dir).as_posix() for p in folder.rglob("*") if not p.is_dir())
    foreign = sorted(set(files) - ours)
    if foreign:
        raise ToyWorldError(
            f"{folder} holds files that are not a toy set creaturekit drew (e.g. {foreign[0]}); "
            "move them out before replacing the toy set."
        )
    shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class ToyGroundTruth:
    """A toy project's ground truth: catalogue, per-image rows and masks."""

    images_dir: Path
    world: World
    size: int
    rows: dict[int, dict[str, Any]]  # by image id

    def mask(self, image_id: int) -> np.ndarray:
        """The (size, size) uint8 label map of an image (0 = bg, i + 1 = PARTS[i])."""
        where = f"{C.IMAGES_DIR}/{C.TOY_DIR}/{C.TOY_GROUND_TRUTH_NAME}"
        with Image.open(inside(self.images_dir, self.rows[image_id]["mask"], where)) as im:
            return np.asarray(im)

    def variants(self, part: str, ids: list[int]) -> np.ndarray:
        """Variant id of ``part`` for each image of ``ids`` (-1 where it is not visible)."""
        return np.asarray(
            [self.rows[i]["variants"][part] if self.rows[i]["visible"][part] else -1 for i in ids]
        )


def load_ground_truth(project: Project) -> ToyGroundTruth:
    """Read the ground truth of a toy project (made by ``init --example toy``)."""
    toy_dir = project.images_dir / C.TOY_DIR
    world_path = toy_dir / C.TOY_WORLD_NAME
    if not world_path.is_file():
        raise StageMissingError(
            f"{project.root} is not a toy project (no {world_path.relative_to(project.root)}); "
            "create one with `creaturekit init DIR --example toy`."
        )
    world = fsutil.read_json(world_path)
    rows = {r["id"]: r for r in fsutil.read_jsonl(toy_dir / C.TOY_GROUND_TRUTH_NAME)}
    try:
        return ToyGroundTruth(project.images_dir, World.from_dict(world), world["size"], rows)
    except (KeyError, TypeError, ValueError) as err:
        raise fsutil.damaged(world_path, repr(err)) from None
