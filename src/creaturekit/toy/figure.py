"""A picture of the toy world: species and novel combinations, each drawing beside its mask.

``python -m creaturekit.toy.figure docs/images/toy-world.png`` writes the one in the docs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from creaturekit import fsutil
from creaturekit.toy.draw import render
from creaturekit.toy.world import SCENES, World, make_world

MASK_COLOURS = np.array(
    [(40, 40, 40), (230, 60, 60), (70, 110, 230), (70, 190, 90), (240, 210, 60)], dtype=np.uint8
)
"""Display colours of mask values: bg, head, body, wings, tail."""
LABEL_WIDTH = 80


def world_figure(
    world: World, size: int = 64, species: int = 6, novel: int = 3, per_row: int = 3
) -> Image.Image:
    """Rows of drawings and masks: the first ``species`` species, then ``novel`` novel ones."""
    rows = [(world.species_name(i), world.species[i]) for i in range(species)]
    rows += [(f"novel-{j:02d}", world.novel[j]) for j in range(novel)]
    sheet = Image.new("RGB", (LABEL_WIDTH + 2 * per_row * size, len(rows) * size), "white")
    pen = ImageDraw.Draw(sheet)
    for r, (label, combo) in enumerate(rows):
        pen.text((4, r * size + size // 2 - 6), label, fill="black")
        for k in range(per_row):
            rng = np.random.default_rng([world.seed, r, k])
            drawing = render(combo, int(rng.integers(0, len(SCENES))), size, rng)
            x = LABEL_WIDTH + 2 * k * size
            sheet.paste(Image.fromarray(drawing.image), (x, r * size))
            sheet.paste(Image.fromarray(MASK_COLOURS[drawing.mask]), (x + size, r * size))
    return sheet


def main(argv: list[str] | None = None) -> None:
    """Write the figure of the default world (seed 0, 24 species) as a PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=80)
    args = parser.parse_args(argv)
    with fsutil.atomic_path(args.out) as tmp:
        world_figure(make_world(), size=args.size).save(tmp, format="PNG", optimize=True)


if __name__ == "__main__":
    main()
