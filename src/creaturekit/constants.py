"""File and folder names shared by the code that writes and the code that reads them."""

from __future__ import annotations

CONFIG_NAME = "creaturekit.toml"
LOCK_NAME = ".creaturekit.lock"
FORMAT_VERSION = 1

IMAGES_DIR = "images"
MANIFEST_NAME = "manifest.jsonl"
IMPORT_REPORT_NAME = "import-report.json"
KEYPOINTS_NAME = "keypoints.jsonl"

DISCOVERY_DIR = "discovery"
RUNS_DIR = "runs"
MIXES_DIR = "mixes"
EVAL_DIR = "eval"

STAGE_DIRS = (DISCOVERY_DIR, RUNS_DIR, MIXES_DIR, EVAL_DIR)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
BACKGROUND_PART = "bg"
#: Options of ``creaturekit mix`` (and ``help``): a part with one of these names could not be
#: given as ``--NAME CODE``, so part names must avoid them.
MIX_OPTION_NAMES = frozenset(
    {"n", "seed", "steps", "guidance", "negative", "scheduler", "size", "like", "fill", "run"}
    | {"project", "quiet", "json", "help", "model"}
)

# Toy world ground truth, under images/ (see docs/toy-world.md).
TOY_DIR = "toy"
TOY_WORLD_NAME = "world.json"
TOY_GROUND_TRUTH_NAME = "ground_truth.jsonl"
TOY_MASKS_DIR = "masks"
