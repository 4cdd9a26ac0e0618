"""eval/<run>/metrics.json as a typed object: older files load, damaged ones are named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from creaturekit import fsutil
from creaturekit.errors import DamagedFileError
from creaturekit.evaluation.metrics import ImageFigures, Metrics
from tests.helpers import older_metrics


def test_an_older_metrics_file_loads_typed_and_writes_back_the_same_layout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "eval" / "r1" / "metrics.json"
    older = older_metrics()
    fsutil.write_json(path, older)
    metrics = Metrics.read(path)
    assert metrics.run == "r1" and metrics.seed == 0 and metrics.seconds == 1.5
    assert metrics.guidance is None and metrics.negative is None  # not recorded back then
    assert metrics.code_similarity is None
    assert metrics.seen.per_part["head"].requests == 1 and metrics.seen.combinations == 1
    assert metrics.seen.images[0].recovered == {"head": 1, "bg": -1}
    assert metrics.novel.oracle is not None and metrics.novel.oracle.per_part["bg"] == 0.0
    assert metrics.seen.image is not None and metrics.seen.image.kid_subset == 2
    assert metrics.seen.image.headline("fid") == 3.0
    assert metrics.novel.image == ImageFigures()  # a group without images scored
    assert metrics.overall["kid"] is None  # a NaN figure, stored as null
    assert metrics.discovery is not None and metrics.discovery.world["nmi"] == 80.0
    assert metrics.discovery.keypoints is not None and metrics.discovery.keypoints.nmi is None
    assert metrics.image_metrics is not None and metrics.image_metrics.clip_model is None
    assert metrics.group("novel") is metrics.novel
    # The same keys and values come back; only the fields added since are written as null.
    assert metrics.to_dict() == older | {"guidance": None, "negative": None}
    assert Metrics.from_dict(metrics.to_dict()) == metrics
    assert "images" not in metrics.to_dict(images=False)["seen"]


def _without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``data`` with the nested key ``keys[-1]`` (under ``keys[:-1]``) removed."""
    *path, last = keys
    inner = data
    for key in path:
        inner = inner[key]
    del inner[last]
    return data


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda m: _without(m, "novel", "emr"), "novel: no 'emr'"),
        (lambda m: _without(m, "overall"), "no 'overall'"),
        (lambda m: m | {"seed": "zero"}, "'zero' is not an integer"),
        (lambda m: m | {"overall": [0.5]}, "list where a JSON object belongs"),
        (lambda m: _without(m, "seen", "per_part", "head", "requests"), "seen: no 'requests'"),
        (lambda m: m | {"discovery": {"keypoints": {"nmi": "x"}}}, "'x' is not a number"),
        (lambda m: [m], "list where a JSON object belongs"),
    ],
)
def test_a_malformed_metrics_file_is_named_with_what_is_wrong(
    tmp_path: Path, damage: Any, reason: str
) -> None:
    path = tmp_path / "eval" / "r1" / "metrics.json"
    fsutil.write_json(path, damage(older_metrics()))
    with pytest.raises(DamagedFileError) as caught:
        Metrics.read(path)
    message = str(caught.value)
    assert str(path) in message and reason in message
    assert "creaturekit eval --run r1" in message  # what rebuilds it
