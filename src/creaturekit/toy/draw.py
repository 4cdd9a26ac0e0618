"""Drawing one toy creature in a scene, with its per-pixel part mask (numpy only).

Every part is an implicit shape in the creature's own frame (``u`` forward, ``v`` down,
about two units long). Each pixel is mapped back into that frame through the pose
(position, scale, rotation, flip), so the mask and the colours come from the same test
and always agree. All randomness comes from the ``rng`` passed in: the same generator
state gives the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from creaturekit.toy.world import COLOURS, PARTS, SCENES, variant

Array = np.ndarray
Shape = Callable[[Array, Array], Array]

UNIT = 0.34
"""One creature unit, as a fraction of the image side, at scale 1."""
CENTRE = (-0.1, -0.15)
"""The middle of the creature's bounding box in its own frame (placed at the pose's x, y)."""
Z_ORDER = ("tail", "body", "head", "wings")
VISIBLE_FRACTION = 0.3
"""A part counts as visible when at least this share of its unoccluded pixels is seen."""
OCCLUSION_RATE = 0.15
OUT_OF_FRAME_RATE = 0.1
NOISE = 4.0
"""Standard deviation of the pixel noise, in 0-255 units."""
OCCLUDER_COLOUR = (125, 120, 112)


@dataclass(frozen=True)
class Pose:
    """Where the creature is: centre (fractions of the side), scale, rotation, mirror."""

    x: float
    y: float
    scale: float
    angle: float  # degrees, clockwise on screen
    flip: bool


@dataclass(frozen=True)
class Drawing:
    """A rendered image, its label mask (0 = background, i + 1 = ``PARTS[i]``) and truth."""

    image: Array  # (size, size, 3) uint8
    mask: Array  # (size, size) uint8
    visible: tuple[bool, ...]  # per part, in PARTS order
    pose: Pose
    occluded: bool


# -- shape primitives (creature frame) ------------------------------------------------
def _rotate(u: Array, v: Array, degrees: float) -> tuple[Array, Array]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return u * c + v * s, -u * s + v * c


def _ellipse(cx: float, cy: float, a: float, b: float, rot: float = 0.0, p: float = 2.0) -> Shape:
    def inside(u: Array, v: Array) -> Array:
        x, y = _rotate(u - cx, v - cy, rot)
        return np.abs(x / a) ** p + np.abs(y / b) ** p <= 1.0

    return inside


def _polygon(*points: tuple[float, float]) -> Shape:
    """A convex polygon, points in either winding order."""
    pts = np.asarray(points)
    edges = np.roll(pts, -1, axis=0) - pts
    area = float(np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1]))
    sign = 1.0 if area > 0 else -1.0

    def inside(u: Array, v: Array) -> Array:
        ok = np.ones(u.shape, dtype=bool)
        for (px, py), (ex, ey) in zip(pts, edges, strict=True):
            ok &= sign * (ex * (v - py) - ey * (u - px)) >= 0
        return ok

    return inside


def _capsule(p0: tuple[float, float], p1: tuple[float, float], r: float) -> Shape:
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy

    def inside(u: Array, v: Array) -> Array:
        t = np.clip(((u - x0) * dx + (v - y0) * dy) / length2, 0.0, 1.0)
        return (u - x0 - t * dx) ** 2 + (v - y0 - t * dy) ** 2 <= r * r

    return inside


def _union(*shapes: Shape) -> Shape:
    def inside(u: Array, v: Array) -> Array:
        out = shapes[0](u, v)
        for shape in shapes[1:]:
            out = out | shape(u, v)
        return out

    return inside


def _shifted(shape: Shape, dx: float, dy: float) -> Shape:
    return lambda u, v: shape(u - dx, v - dy)


HEAD_AT = (0.55, -0.3)
WING_PIVOT = (0.1, -0.1)
SHAPES: dict[str, dict[str, Shape]] = {
    "head": {
        name: _shifted(shape, *HEAD_AT)
        for name, shape in {
            "round": _ellipse(0, 0, 0.25, 0.25),
            "square": _ellipse(0, 0, 0.23, 0.23, p=5),
            "pointed": _union(
                _ellipse(-0.05, 0, 0.19, 0.19), _polygon((-0.1, -0.19), (0.38, 0.03), (-0.1, 0.2))
            ),
            "crested": _union(
                _ellipse(0, 0, 0.21, 0.21), _polygon((-0.17, -0.1), (-0.02, -0.47), (0.1, -0.12))
            ),
        }.items()
    },
    "body": {
        "oval": _ellipse(0, 0, 0.55, 0.36),
        "round": _ellipse(0, 0, 0.42, 0.42),
        "slender": _ellipse(0, 0, 0.72, 0.24),
        "boxy": _ellipse(0, 0, 0.52, 0.34, p=5),
    },
    "wings": {
        "pointed": _polygon((0.25, -0.08), (-0.2, 0.08), (-0.62, -0.58)),
        "round": _ellipse(-0.1, -0.22, 0.33, 0.22, rot=20),
        "long": _ellipse(-0.28, -0.34, 0.55, 0.11, rot=32),
        "fanned": _union(
            *(
                _ellipse(
                    WING_PIVOT[0] + 0.32 * math.cos(math.radians(a)),
                    WING_PIVOT[1] + 0.32 * math.sin(math.radians(a)),
                    0.34,
                    0.09,
                    rot=-a,
                )
                for a in (-165, -135, -105)
            )
        ),
    },
    "tail": {
        "fan": _polygon((-0.45, 0.0), (-1.12, -0.42), (-1.12, 0.3)),
        "thin": _capsule((-0.45, 0.0), (-1.15, -0.45), 0.085),
        "forked": _union(
            _capsule((-0.45, 0.0), (-1.1, -0.4), 0.085), _capsule((-0.45, 0.0), (-1.1, 0.3), 0.085)
        ),
        "tufted": _union(
            _ellipse(-0.84, -0.12, 0.24, 0.24), _capsule((-0.45, 0), (-0.8, -0.1), 0.07)
        ),
    },
}
EYE = _ellipse(HEAD_AT[0] + 0.07, HEAD_AT[1] - 0.05, 0.055, 0.055)


def _pattern(name: str, u: Array, v: Array) -> Array:
    """Where a pattern takes the darker colour (creature frame)."""
    if name == "striped":
        return np.floor((u + v) / 0.13) % 2 == 1
    if name == "banded":
        return np.floor(u / 0.12) % 2 == 1
    if name == "spotted":
        pu, pv = (u % 0.2) - 0.1, (v % 0.2) - 0.1
        return pu * pu + pv * pv <= 0.065**2
    return np.zeros(u.shape, dtype=bool)


def _shade(colour: tuple[int, int, int]) -> Array:
    """The pattern colour of ``colour``: darker, or lighter for very dark colours."""
    rgb = np.asarray(colour, dtype=np.float32)
    return rgb + 95.0 if rgb.mean() < 80 else rgb * 0.55


# -- scenes (image frame, x and y in [0, 1]) -----------------------------------------
def _mix(a: Sequence[float], b: Sequence[float], t: Array) -> Array:
    t = t[..., None]
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


def _scene(index: int, x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Scene ``index`` (see ``SCENES``) as float RGB, with per-image random details."""
    size = x.shape[0]
    horizon = rng.uniform(0.45, 0.7)
    phase = rng.uniform(0, 2 * math.pi)
    texture = rng.normal(0.0, 1.0, x.shape).astype(np.float32)
    sky = _mix((110, 165, 235), (215, 235, 250), y)
    name = SCENES[index]
    if name == "blue sky":
        out = sky
        for _ in range(2):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0.05, 0.6), rng.uniform(0.08, 0.16)
            cloud = ((x - cx) / (2 * r)) ** 2 + ((y - cy) / r) ** 2 <= 1
            out[cloud] = (248, 248, 252)
    elif name == "green meadow":
        ground = (y > horizon)[..., None]
        grass = _mix((95, 180, 75), (50, 130, 45), np.clip(0.5 + 0.25 * texture, 0, 1))
        out = np.where(ground, grass, sky)
    elif name == "sandy desert":
        dune = horizon + 0.05 * np.sin(x * 9 + phase)
        sand = _mix((235, 200, 130), (205, 160, 95), np.clip((y - dune) * 2, 0, 1))
        out = np.where((y > dune)[..., None], sand, _mix((250, 225, 170), (245, 205, 150), y))
    elif name == "starry night":
        out = _mix((12, 16, 45), (45, 45, 95), y)
        out[rng.random(x.shape) < 0.012] = (250, 250, 220)
    elif name == "snowy field":
        snow = _mix((240, 244, 250), (200, 212, 230), np.clip(0.3 + 0.2 * texture, 0, 1))
        out = np.where((y > horizon)[..., None], snow, _mix((190, 195, 210), (225, 228, 235), y))
    elif name == "dark forest":
        out = _mix((20, 55, 30), (35, 80, 40), np.clip(0.5 + 0.2 * texture, 0, 1))
        for cx in rng.uniform(0, 1, size=int(rng.integers(3, 6))):
            out[np.abs(x - cx) < rng.uniform(0.02, 0.045)] = (85, 58, 35)
    elif name == "rippling water":
        wave = np.sin(y * 60 + 3 * np.sin(x * 7 + phase)) > 0.75
        out = _mix((30, 95, 170), (20, 70, 140), y)
        out[wave] = (120, 175, 225)
    else:  # brick wall
        rows = 8
        row = np.floor(y * rows)
        offset = np.where(row % 2 == 1, 0.5 / 4, 0.0)
        mortar = ((y * rows) % 1 < 0.12) | (((x + offset) * 4) % 1 < 0.05)
        brick = _mix((170, 75, 50), (135, 55, 40), np.clip(0.5 + 0.2 * texture, 0, 1))
        out = np.where(mortar[..., None], np.float32(190.0), brick)
    return np.asarray(out, dtype=np.float32).reshape(size, size, 3)


# -- the whole picture ---------------------------------------------------------------
def sample_pose(rng: np.random.Generator) -> Pose:
    """A random pose; sometimes placed so that a part leaves the frame."""
    spread = 0.4 if rng.random() < OUT_OF_FRAME_RATE else 0.14
    return Pose(
        x=0.5 + rng.uniform(-spread, spread),
        y=0.5 + rng.uniform(-spread, spread),
        scale=rng.uniform(0.75, 1.15),
        angle=rng.uniform(-15, 15),
        flip=bool(rng.random() < 0.5),
    )


def _creature_frame(size: int, pad: int, pose: Pose) -> tuple[Array, Array]:
    """Creature-frame coordinates of every pixel centre of the padded canvas."""
    coords = np.arange(-pad, size + pad, dtype=np.float32) + 0.5
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    unit = UNIT * size * pose.scale
    u, v = _rotate((xs - pose.x * size) / unit, (ys - pose.y * size) / unit, pose.angle)
    if pose.flip:
        u = -u
    return u + CENTRE[0], v + CENTRE[1]


def _outline(labels: Array, width: int) -> Array:
    """Pixels whose label differs from a neighbour within ``width`` pixels."""
    edge = np.zeros(labels.shape, dtype=bool)
    padded = np.pad(labels, width, mode="edge")
    h, w = labels.shape
    for dy, dx in ((0, width), (0, -width), (width, 0), (-width, 0)):
        edge |= padded[width + dy : width + dy + h, width + dx : width + dx + w] != labels
    return edge


def render(
    combo: Sequence[int],
    scene: int,
    size: int,
    rng: np.random.Generator,
    *,
    noise: float = NOISE,
) -> Drawing:
    """Draw the creature with part variants ``combo`` (PARTS order) in scene ``scene``."""
    pose = sample_pose(rng)
    pad = size // 2
    u, v = _creature_frame(size, pad, pose)
    labels = np.zeros(u.shape, dtype=np.uint8)
    for part in Z_ORDER:
        index = PARTS.index(part)
        labels[SHAPES[part][variant(part, combo[index]).shape](u, v)] = index + 1
    full = np.bincount(labels.ravel(), minlength=len(PARTS) + 1)
    crop = (slice(pad, pad + size), slice(pad, pad + size))
    labels, u, v = labels[crop], u[crop], v[crop]

    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.meshgrid(axis, axis, indexing="ij")
    image = _scene(scene, x, y, rng)
    for index, part in enumerate(PARTS):
        where = labels == index + 1
        look = variant(part, combo[index])
        colour = np.asarray(COLOURS[look.colour], np.float32)
        dark = _pattern(look.pattern, u, v)
        image[where & ~dark] = colour
        image[where & dark] = _shade(COLOURS[look.colour])
    image[(labels == PARTS.index("head") + 1) & EYE(u, v)] = (20, 20, 25)

    occluded = bool(rng.random() < OCCLUSION_RATE)
    drawn = labels.copy()
    if occluded:
        cx, cy = pose.x + rng.uniform(-0.25, 0.25), pose.y + rng.uniform(-0.05, 0.2)
        r = rng.uniform(0.07, 0.13)
        rock = ((x - cx) / (1.3 * r)) ** 2 + ((y - cy) / r) ** 2 <= 1
        image[rock] = np.asarray(OCCLUDER_COLOUR, np.float32) + 12 * rng.normal(size=(1, 3))
        labels[rock] = 0
        drawn[rock] = 255
    edge = _outline(drawn, max(1, size // 64)) & (drawn > 0)
    image[edge] *= 0.45

    seen = np.bincount(labels.ravel(), minlength=len(PARTS) + 1)
    visible = tuple(
        bool(seen[i + 1] > 0 and seen[i + 1] >= VISIBLE_FRACTION * full[i + 1])
        for i in range(len(PARTS))
    )
    if noise:
        image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return Drawing(image=pixels, mask=labels, visible=visible, pose=pose, occluded=occluded)
