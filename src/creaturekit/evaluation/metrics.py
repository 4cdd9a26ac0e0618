"""What ``eval`` measures, typed: the content of ``eval/<run>/metrics.json``.

:class:`Metrics` is what :func:`creaturekit.evaluation.evaluate.evaluate` returns and
``metrics.json`` stores (:meth:`Metrics.to_dict`); :meth:`Metrics.read` loads it back,
checked, and names a damaged file. Keys that are part names (per-part figures) are
``dict[str, ...]`` fields. Figures that were NaN are stored as ``null`` and read back
as ``None``. Files written before a field was recorded (``guidance``, ``negative``,
``code_similarity``, ``code_recognition``, ``distinctness_warning``) still load, with
``None`` for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from creaturekit import fsutil

T = TypeVar("T")

#: The combination groups of an evaluation, in report order.
GROUPS = ("seen", "novel")


@dataclass(frozen=True)
class PartScores:
    """EMR and CoSim of one part over a group's images."""

    emr: float
    cosim: float
    requests: int  # images that asked for this part


@dataclass(frozen=True)
class ImageScores:
    """One generated image: the codes asked for and re-coded, by part name."""

    requested: dict[str, int]
    recovered: dict[str, int]  # -1 where the part is absent
    cosim: dict[str, float]
    emr: float


@dataclass(frozen=True)
class OracleScores:
    """A world's independent judgement: the share of requested parts drawn right."""

    accuracy: float
    per_part: dict[str, float]


@dataclass(frozen=True)
class ImageFigures:
    """Image metrics of one group (:mod:`creaturekit.evaluation.image_metrics`); a figure
    that could not be computed (too few images, no CLIP model, NaN) is ``None``."""

    similarity: float | None = None
    similarity_per_part: dict[str, float] | None = None
    clip_score: float | None = None
    fid: float | None = None
    kid: float | None = None
    kid_std: float | None = None
    kid_subset: int | None = None

    def headline(self, name: str) -> float | None:
        """A figure by name (one of ``IMAGE_HEADLINES``)."""
        value = getattr(self, name)
        return value if isinstance(value, float) else None


@dataclass(frozen=True)
class ImageMetricsInfo:
    """What the image metrics were computed with."""

    image_model: str
    fid_model: str
    clip_model: str | None
    clip_text: str
    reference_images: int
    skipped: dict[str, str]  # figure -> why it was not computed


@dataclass(frozen=True)
class KeypointScores:
    """Discovery NMI and ARI (x 100) at the annotated keypoints."""

    nmi: float | None
    ari: float | None
    keypoints: int


@dataclass(frozen=True)
class DiscoveryFigures:
    """Discovery against ground truth: the world's own figures (a reference scorer's
    ``discovery``, e.g. the toy world's NMI, ARI, purity) and the keypoint protocol's."""

    world: dict[str, Any] = field(default_factory=dict)
    keypoints: KeypointScores | None = None


@dataclass(frozen=True)
class GroupScores:
    """Everything measured on one group of combinations (seen or novel)."""

    combinations: int
    emr: float
    cosim: float
    per_part: dict[str, PartScores]
    images: list[ImageScores]
    oracle: OracleScores | None = None  # with a world's reference scorer
    image: ImageFigures | None = None  # with the image metrics


@dataclass(frozen=True)
class Metrics:
    """One evaluation of a run (``eval/<run>/metrics.json``)."""

    run: str
    seed: int
    images_per_combination: int
    creaturekit_version: str
    seen: GroupScores
    novel: GroupScores
    overall: dict[str, float | None]  # headline figures, flat: seen_emr, novel_fid...
    seconds: float
    guidance: float | None = None
    negative: str | None = None
    code_similarity: dict[str, float | None] | None = None  # its code vectors' median cosine
    code_recognition: dict[str, float | None] | None = None  # the probe's own-code preference
    distinctness_warning: str | None = None  # the line naming parts whose codes draw alike
    discovery: DiscoveryFigures | None = None
    image_metrics: ImageMetricsInfo | None = None

    def group(self, name: str) -> GroupScores:
        """``seen`` or ``novel`` by name."""
        if name not in GROUPS:
            raise KeyError(name)
        return self.seen if name == "seen" else self.novel

    def to_dict(self, images: bool = True) -> dict[str, Any]:
        """The JSON layout of ``metrics.json`` (without the per-image rows if not ``images``)."""
        out: dict[str, Any] = {
            "run": self.run,
            "seed": self.seed,
            "images_per_combination": self.images_per_combination,
            "guidance": self.guidance,
            "negative": self.negative,
            "creaturekit_version": self.creaturekit_version,
        }
        if self.code_similarity is not None:
            out["code_similarity"] = self.code_similarity
        if self.code_recognition is not None:
            out["code_recognition"] = self.code_recognition
        if self.distinctness_warning is not None:
            out["distinctness_warning"] = self.distinctness_warning
        if self.discovery is not None:
            out["discovery"] = _discovery_dict(self.discovery)
        for name in GROUPS:
            out[name] = _group_dict(self.group(name), images)
        out["overall"] = self.overall
        if self.image_metrics is not None:
            out["image_metrics"] = _plain(self.image_metrics)
        out["seconds"] = self.seconds
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Metrics:
        """Metrics from their JSON layout (ValueError naming what is wrong if invalid)."""
        try:
            data = _object(data)
            groups = {}
            for name in GROUPS:
                try:
                    groups[name] = _group(data[name])
                except (KeyError, TypeError, ValueError, AttributeError) as err:
                    raise ValueError(f"{name}: {_why(err)}") from None
            return cls(
                run=_text(data["run"]),
                seed=_integer(data["seed"]),
                images_per_combination=_integer(data["images_per_combination"]),
                creaturekit_version=_text(data.get("creaturekit_version", "unknown")),
                seen=groups["seen"],
                novel=groups["novel"],
                overall=_table(data["overall"], _maybe(_number)),
                seconds=_number(data["seconds"]),
                guidance=_maybe(_number)(data.get("guidance")),
                negative=_maybe(_text)(data.get("negative")),
                code_similarity=_per_part(data.get("code_similarity")),
                code_recognition=_per_part(data.get("code_recognition")),
                distinctness_warning=_maybe(_text)(data.get("distinctness_warning")),
                discovery=_maybe(_discovery)(data.get("discovery")),
                image_metrics=_maybe(_image_info)(data.get("image_metrics")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(_why(err)) from None

    @classmethod
    def read(cls, path: Path) -> Metrics:
        """The metrics in ``path``; a damaged or incomplete file is named."""
        data = fsutil.read_json(path)
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise fsutil.damaged(path, err) from None


# -- writing ---------------------------------------------------------------------------
def _plain(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__dataclass_fields__}


def _group_dict(group: GroupScores, images: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "emr": group.emr,
        "cosim": group.cosim,
        "per_part": {p: _plain(s) for p, s in group.per_part.items()},
    }
    if images:
        out["images"] = [_plain(row) for row in group.images]
    if group.oracle is not None:
        out["oracle"] = _plain(group.oracle)
    if group.image is not None:
        # figures never computed are left out, as the image scorer always did
        out["image"] = {k: v for k, v in _plain(group.image).items() if v is not None}
    out["combinations"] = group.combinations
    return out


def _discovery_dict(figures: DiscoveryFigures) -> dict[str, Any]:
    out = dict(figures.world)
    if figures.keypoints is not None:
        out["keypoints"] = _plain(figures.keypoints)
    return out


# -- reading ---------------------------------------------------------------------------
def _why(err: Exception) -> str:
    return f"no {err}" if isinstance(err, KeyError) else str(err)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{type(value).__name__} where a JSON object belongs")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _maybe(read: Callable[[Any], T]) -> Callable[[Any], T | None]:
    """``read``, letting ``null`` (a NaN figure, a field not recorded) through as None."""
    return lambda value: None if value is None else read(value)


def _per_part(value: Any) -> dict[str, float | None] | None:
    """A per-part table of figures that may be null, or None where the file has none."""
    return _maybe(lambda v: _table(v, _maybe(_number)))(value)


def _table(value: Any, read: Callable[[Any], T]) -> dict[str, T]:
    return {str(k): read(v) for k, v in _object(value).items()}


def _group(data: Any) -> GroupScores:
    data = _object(data)
    return GroupScores(
        combinations=_integer(data["combinations"]),
        emr=_number(data["emr"]),
        cosim=_number(data["cosim"]),
        per_part=_table(data["per_part"], _part),
        images=[_image_row(row) for row in data.get("images", [])],
        oracle=_maybe(_oracle)(data.get("oracle")),
        image=_maybe(_image_figures)(data.get("image")),
    )


def _part(value: Any) -> PartScores:
    data = _object(value)
    return PartScores(
        emr=_number(data["emr"]), cosim=_number(data["cosim"]), requests=_integer(data["requests"])
    )


def _image_row(value: Any) -> ImageScores:
    data = _object(value)
    return ImageScores(
        requested=_table(data["requested"], _integer),
        recovered=_table(data["recovered"], _integer),
        cosim=_table(data["cosim"], _number),
        emr=_number(data["emr"]),
    )


def _oracle(value: Any) -> OracleScores:
    data = _object(value)
    return OracleScores(
        accuracy=_number(data["accuracy"]), per_part=_table(data["per_part"], _number)
    )


def _image_figures(value: Any) -> ImageFigures:
    data = _object(value)
    number = _maybe(_number)
    return ImageFigures(
        similarity=number(data.get("similarity")),
        similarity_per_part=_maybe(lambda v: _table(v, _number))(data.get("similarity_per_part")),
        clip_score=number(data.get("clip_score")),
        fid=number(data.get("fid")),
        kid=number(data.get("kid")),
        kid_std=number(data.get("kid_std")),
        kid_subset=_maybe(_integer)(data.get("kid_subset")),
    )


def _image_info(value: Any) -> ImageMetricsInfo:
    data = _object(value)
    return ImageMetricsInfo(
        image_model=_text(data["image_model"]),
        fid_model=_text(data["fid_model"]),
        clip_model=_maybe(_text)(data.get("clip_model")),
        clip_text=_text(data["clip_text"]),
        reference_images=_integer(data["reference_images"]),
        skipped=_table(data.get("skipped", {}), _text),
    )


def _discovery(value: Any) -> DiscoveryFigures:
    data = dict(_object(value))
    keypoints = data.pop("keypoints", None)
    return DiscoveryFigures(world=data, keypoints=_maybe(_keypoints)(keypoints))


def _keypoints(value: Any) -> KeypointScores:
    data = _object(value)
    return KeypointScores(
        nmi=_maybe(_number)(data["nmi"]),
        ari=_maybe(_number)(data["ari"]),
        keypoints=_integer(data["keypoints"]),
    )
