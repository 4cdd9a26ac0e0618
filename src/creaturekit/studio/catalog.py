"""What the studio shows of a project's discovery, read once and kept while it is current.

:class:`Catalog` loads the discovery result when it changes on disk (a ``discover``
run while the studio is open is picked up on the next page), turns it into
:class:`PartView` galleries listing EVERY sub-concept of every part with its members,
and draws the pictures the pages ask for: a part's crop in a member image and the part
overlay of an image, both at the image's own aspect ratio, and image thumbnails.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from creaturekit.config import load_config
from creaturekit.discovery.report import overlay, part_colour, part_crop
from creaturekit.discovery.result import RESULT_FILE, DiscoveryResult
from creaturekit.errors import CreatureKitError
from creaturekit.project import Project

#: Longest side of a crop, an overlay and a thumbnail, in pixels.
CROP_SIDE = 160
OVERLAY_SIDE = 256
THUMB_SIDE = 160
#: Members shown per sub-concept (spread over all its members), and overlay samples.
MEMBERS_SHOWN = 6
SAMPLES = 8
_CACHE_SIZE = 4096


class PictureNotFoundError(CreatureKitError):
    """A picture asked for by a page that the project does not have (any more)."""


@dataclass
class CodeView:
    """One sub-concept of a part: its members (rows of the discovery's codes)."""

    code: int
    members: list[int]
    share: float  # of the images where the part is present
    area: float  # mean share of a member image covered by the part

    def shown(self, count: int = MEMBERS_SHOWN) -> list[int]:
        """Up to ``count`` members spread evenly over all of them (not just the first)."""
        if len(self.members) <= count:
            return self.members
        picks = np.linspace(0, len(self.members) - 1, count).round().astype(int)
        return [self.members[i] for i in picks]


@dataclass
class PartView:
    """A part with its name and every sub-concept."""

    index: int
    name: str
    is_background: bool
    coverage: float
    presence: float
    colour: tuple[int, int, int]
    codes: list[CodeView]


class Catalog:
    """The project as the studio pages read it; pictures cached by discovery stamp."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._result: DiscoveryResult | None = None
        self._key: tuple[int, int] | None = None
        self._pictures: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def reload_config(self) -> None:
        """Read ``creaturekit.toml`` again (names may have been changed by the CLI)."""
        self.project.config = load_config(self.project.config_path)

    def result(self) -> DiscoveryResult | None:
        """The discovery result, or None before discovery (a damaged one raises)."""
        from creaturekit.discovery.discover import load_result

        path = self.project.discovery_dir / RESULT_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._result = self._key = None
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._key != key:
                self._result, self._key = load_result(self.project), key
            return self._result

    def parts(self, result: DiscoveryResult) -> list[PartView]:
        """Every part with every sub-concept (empty sub-concepts included, with 0 members)."""
        views = []
        for p in result.parts:
            index, key = int(p.index), str(p.index)
            members: dict[int, list[int]] = {}
            for row, codes in enumerate(result.codes):
                if key in codes["codes"]:
                    members.setdefault(int(codes["codes"][key]), []).append(row)
            present = sum(len(m) for m in members.values()) or 1
            area = (result.masks == index).mean(axis=(1, 2))
            views.append(
                PartView(
                    index=index,
                    name=self.project.config.part_name(index, p.is_background),
                    is_background=bool(p.is_background),
                    coverage=float(p.coverage),
                    presence=float(p.presence),
                    colour=part_colour(index, p.is_background),
                    codes=[
                        CodeView(
                            code=k,
                            members=members.get(k, []),
                            share=len(members.get(k, [])) / present,
                            area=float(area[members[k]].mean()) if members.get(k) else 0.0,
                        )
                        for k in range(int(p.subconcepts))
                    ],
                )
            )
        return views

    def samples(self, result: DiscoveryResult) -> list[int]:
        """Rows shown with their part overlay: spread over the whole image set."""
        n = len(result.codes)
        return sorted({int(i) for i in np.linspace(0, n - 1, min(SAMPLES, n))}) if n else []

    # -- pictures (PNG bytes) ----------------------------------------------------------
    def crop_png(self, part: int, row: int) -> bytes:
        """Part ``part`` in discovery row ``row``'s image, other parts dimmed."""
        result = self._row_result(row)
        if part not in {int(p.index) for p in result.parts}:
            raise PictureNotFoundError(f"There is no part {part}.")

        def draw() -> bytes:
            image = self._open(result.codes[row]["file"], OVERLAY_SIDE)
            crop = part_crop(image, result.masks[row], part)
            crop.thumbnail((CROP_SIDE, CROP_SIDE), Image.Resampling.BICUBIC)
            return _png(crop)

        return self._cached(("crop", result.stamp, part, row), draw)

    def overlay_png(self, row: int) -> bytes:
        """Row ``row``'s image with every part tinted (background dark)."""
        result = self._row_result(row)
        colours = np.array(
            [part_colour(p.index, p.is_background) for p in result.parts] + [(255, 255, 255)],
            np.float32,
        )

        def draw() -> bytes:
            image = self._open(result.codes[row]["file"], OVERLAY_SIDE)
            return _png(overlay(image, result.masks[row], colours))

        return self._cached(("overlay", result.stamp, row), draw)

    def thumb_png(self, image_id: int) -> bytes:
        """A thumbnail of imported image ``image_id`` (aspect ratio kept)."""
        record = next((r for r in self.project.manifest() if r.id == image_id), None)
        if record is None:
            raise PictureNotFoundError(f"There is no image {image_id} in this project.")
        return self._cached(
            ("thumb", record.file, record.id),
            lambda: _png(self._open(record.file, THUMB_SIDE)),
        )

    def _row_result(self, row: int) -> DiscoveryResult:
        result = self.result()
        if result is None:
            raise PictureNotFoundError("This project has no discovery result yet.")
        if not 0 <= row < len(result.codes):
            raise PictureNotFoundError(f"There is no discovered image {row}.")
        return result

    def _open(self, file: str, side: int) -> Image.Image:
        from creaturekit.paths import inside

        path = inside(self.project.images_dir, file, "an image of the project")
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except FileNotFoundError:
            raise PictureNotFoundError(f"images/{file} is missing from the project.") from None
        except OSError as err:
            raise PictureNotFoundError(f"images/{file} cannot be read ({err}).") from None
        image.thumbnail((side, side), Image.Resampling.BICUBIC)
        return image

    def _cached(self, key: tuple[Any, ...], make: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._pictures:
                self._pictures.move_to_end(key)
                return self._pictures[key]
        data = make()
        with self._lock:
            self._pictures[key] = data
            while len(self._pictures) > _CACHE_SIZE:
                self._pictures.popitem(last=False)
        return data


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
