"""The project's settings: ``creaturekit.toml``, typed, with a documented default for every value.

The file is meant to be edited by hand. :func:`render_config` writes it with each
value's documentation as a comment; :func:`load_config` reads it back and rejects
unknown keys and values of the wrong type with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

from creaturekit.constants import BACKGROUND_PART, FORMAT_VERSION, MIX_OPTION_NAMES
from creaturekit.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _opt(default: Any, doc: str) -> Any:
    """A config field with its documentation (shown as a comment in the TOML file)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class ProjectSettings:
    """What the project is about."""

    name: str = _opt("creatures", "Project name, shown in reports.")
    category: str = _opt(
        "creature", 'The category word used in prompts ("a photo of a <head> <wing> bird").'
    )
    format_version: int = _opt(FORMAT_VERSION, "Project folder format; written by init.")


@dataclass
class ImageSettings:
    """How images are imported and which ones later stages use."""

    min_side: int = _opt(64, "Images with a side shorter than this (pixels) are skipped.")
    split: str = _opt(
        "train", 'Which images discover and fit use: "train", "test" or "all" (from the manifest).'
    )


@dataclass
class PartSettings:
    """Names of the discovered parts; ``mix --head 42`` uses these names."""

    names: dict[str, str] = _opt(
        {}, 'Part index -> name, e.g. {0 = "head", 3 = "wing"}; the background is always "bg".'
    )


@dataclass
class DiscoverSettings:
    """Stage 1: unsupervised part and sub-concept discovery."""

    backend: str = _opt("dino-kmeans", "Discovery backend (see `creaturekit plugins`).")
    model: str = _opt("facebook/dinov2-base", "Feature backbone: hub id or local folder.")
    image_size: int = _opt(224, "Input size of the backbone (pixels, square).")
    parts: int = _opt(8, "Number of foreground parts M.")
    subconcepts: int = _opt(256, "Sub-concepts K per part (capped for small image sets).")
    bg_subconcepts: int = _opt(256, "Sub-concepts of the background part.")
    batch_size: int = _opt(32, "Images per feature-extraction batch.")
    seed: int = _opt(42, "Random seed of the clusterings.")
    kmeans: str = _opt("torch", 'k-means engine: "torch" (built in) or "faiss" (extra `faiss`).')
    sample_images: int = _opt(
        1000, "Images (a seeded sample) the foreground and part levels learn from at most."
    )
    subconcept_points: int = _opt(
        64, "Images per sub-concept centroid (a seeded sample) the sub-concepts learn from."
    )
    options: dict[str, Any] = _opt(
        {},
        "Any other option of the backend, e.g. {position_weight = 0.5} (list them with "
        "`creaturekit plugins --options NAME`).",
    )


@dataclass
class FitSettings:
    """Stage 2: textual inversion + projector + LoRA + attention loss.

    Unset values come from the preset; set one here (or by flag) to override it.
    """

    preset: str = _opt("sd15", 'Hyper-parameter preset: "sd15" (reference) or "toy" (CPU).')
    model: str = _opt(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", "Base model: hub id, local folder or preset."
    )
    overrides: dict[str, Any] = _opt(
        {}, "Values that override the preset, e.g. {steps = 2000, lr = 5e-5, attn_loss = 0.0}."
    )


@dataclass
class MixSettings:
    """Stage 3: generation defaults."""

    steps: int = _opt(30, "Denoising steps.")
    guidance: float = _opt(7.5, "Classifier-free guidance scale.")
    negative: str = _opt(
        "blurry, ugly, duplicate, poorly drawn, deformed, mosaic", "Negative prompt."
    )
    template: str = _opt("a photo of a {parts} {category}", "Prompt around the part tokens.")


@dataclass
class EvalSettings:
    """Evaluation defaults."""

    combinations: int = _opt(100, "Code combinations generated per evaluation.")
    images_per_combination: int = _opt(1, "Images per combination.")
    seed: int = _opt(0, "Seed of the combination draw and of generation.")
    image_metrics: bool = _opt(
        True, "Also score the images: similarity to real images with the same codes, CLIP, FID/KID."
    )
    image_model: str = _opt(
        "facebook/dinov2-base",
        'Backbone of image similarity: hub id, local folder, or "discovery" (the project\'s own '
        "discovery backbone; works offline).",
    )
    fid_model: str = _opt(
        "inception",
        'Backbone of FID/KID: "inception" (standard), a local Inception weights file (.pth), '
        'or an image backbone as in image_model (e.g. "discovery").',
    )
    clip_model: str = _opt(
        "openai/clip-vit-base-patch32",
        'CLIPModel of the text score: hub id or local folder; "" skips the CLIP score.',
    )


@dataclass
class Config:
    """All settings of one project."""

    project: ProjectSettings = field(default_factory=ProjectSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    parts: PartSettings = field(default_factory=PartSettings)
    discover: DiscoverSettings = field(default_factory=DiscoverSettings)
    fit: FitSettings = field(default_factory=FitSettings)
    mix: MixSettings = field(default_factory=MixSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)

    def part_name(self, index: int, is_background: bool = False) -> str:
        """The name of part ``index``: the user's name, ``bg``, or ``part<index>``."""
        if is_background:
            return BACKGROUND_PART
        return self.parts.names.get(str(index), f"part{index}")


def parse_assignments(pairs: list[str], flag: str, example: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (the ``flag`` options of a command) as a dict; a VALUE is read as
    TOML (``0.5``, ``true``, ``"text"``) and else taken as text (``pretrained=openai``)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise ConfigError(f"{flag} expects KEY=VALUE (e.g. {example}), got {pair!r}.")
        try:
            values[key] = tomllib.loads(f"value = {value.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            values[key] = value.strip()
    return values


def _check_value(where: str, value: Any, expected: Any) -> Any:
    origin = getattr(expected, "__origin__", None)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}.")
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}.")
    if expected in (int, float, str, bool) and (
        not isinstance(value, expected) or (expected is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where} must be {expected.__name__}, got {value!r}.")
    return value


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from parsed TOML, validating keys and types."""
    sections = get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    for name, values in data.items():
        if name not in sections:
            raise ConfigError(
                f"Unknown section [{name}] in creaturekit.toml; known: {', '.join(sections)}."
            )
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] in creaturekit.toml must be a table.")
        cls = sections[name]
        hints = get_type_hints(cls)
        for key in values:
            if key not in hints:
                raise ConfigError(
                    f"Unknown key {name}.{key} in creaturekit.toml; known: {', '.join(hints)}."
                )
        checked = {k: _check_value(f"{name}.{k}", v, hints[k]) for k, v in values.items()}
        kwargs[name] = cls(**checked)
    config = Config(**kwargs)
    _validate(config)
    return config


def _validate(config: Config) -> None:
    names = config.parts.names
    for key, value in names.items():
        if not key.isdigit():
            raise ConfigError(f"parts.names keys are part indices, got {key!r}.")
        check_part_name(value)
    if len(set(names.values())) != len(names):
        raise ConfigError("Two parts have the same name in parts.names.")
    if config.images.split not in ("train", "test", "all"):
        raise ConfigError('images.split must be "train", "test" or "all".')
    version = config.project.format_version
    if not 1 <= version <= FORMAT_VERSION:
        raise ConfigError(
            f"project.format_version is {version}, but this creaturekit reads project format "
            f"{FORMAT_VERSION}; "
            + ("upgrade creaturekit to open it." if version > FORMAT_VERSION else "fix the value.")
        )
    _check_template(config.mix.template)


def check_part_name(name: str) -> None:
    """Refuse a part name that is not one word, is the background's, or is a ``mix`` option."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(
            f"Part name {name!r} must be a single word (letters, digits, underscores)."
        )
    if name == BACKGROUND_PART:
        raise ConfigError(f'"{BACKGROUND_PART}" is reserved for the background part.')
    if name.lower() in MIX_OPTION_NAMES:
        raise ConfigError(
            f"Part name {name!r} is an option of `creaturekit mix` (--{name}); choose another, "
            f"e.g. {name}_part."
        )


def fill_template(template: str, parts: str, category: str) -> str:
    """A mix prompt: ``parts`` (the part tokens, space-separated) and ``category`` in
    ``template`` (``mix.template``, checked by :func:`_check_template`)."""
    return template.format(parts=parts, category=category)


def _check_template(template: str) -> None:
    """mix.template may use {parts} and {category} only (and must use {parts})."""
    import string

    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        fill_template(template, "", "")
    except (ValueError, IndexError, KeyError) as err:
        fields = {f"invalid: {err}"}
    if fields - {"parts", "category"} or "parts" not in fields:
        raise ConfigError(
            f"mix.template {template!r} must contain {{parts}} and may contain {{category}}, "
            'nothing else in braces (e.g. "a photo of a {parts} {category}").'
        )


def load_config(path: str | Path) -> Config:
    """Read and validate a ``creaturekit.toml``."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid TOML (UTF-8 text): {err}.") from err
    return config_from_dict(data)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain-data form of ``config`` (what the TOML file holds)."""
    return dataclasses.asdict(config)


def render_config(config: Config) -> str:
    """TOML text of ``config`` with every value's documentation as a comment."""
    lines = ["# creaturekit project settings. Every value is documented; edit freely.", ""]
    for section in dataclasses.fields(config):
        obj = getattr(config, section.name)
        doc = (type(obj).__doc__ or "").strip().splitlines()
        lines.append(f"[{section.name}]")
        lines.extend(f"# {d.strip()}" if d.strip() else "#" for d in doc)
        for f in dataclasses.fields(obj):
            lines.append(f"# {f.metadata['doc']}")
            value = tomli_w.dumps({f.name: getattr(obj, f.name)}).strip()
            if isinstance(getattr(obj, f.name), dict):
                # A sub-table; keep it inline so the file reads top to bottom.
                value = f"{f.name} = {_inline_table(getattr(obj, f.name))}"
            lines.append(value)
        lines.append("")
    return "\n".join(lines)


def _inline_table(table: dict[str, Any]) -> str:
    items = ", ".join(
        f"{k if k.isidentifier() or k.isdigit() else tomli_w.dumps({k: 0}).split(' =')[0]} = "
        f"{tomli_w.dumps({'v': v}).strip()[4:]}"
        for k, v in table.items()
    )
    return "{" + (f" {items} " if items else "") + "}"
