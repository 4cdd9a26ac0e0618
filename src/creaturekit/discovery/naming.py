"""Part names: listed with sizes, set by the user (``creaturekit.toml``), or guessed from keypoints.

A part is identified by its index in the discovery result; its name lives in the
project's settings. The background is always ``bg``; unnamed parts are ``part<index>``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict
from typing import Any

from creaturekit.config import config_from_dict, config_to_dict
from creaturekit.constants import BACKGROUND_PART
from creaturekit.discovery.errors import DiscoveryResultError
from creaturekit.discovery.keypoint_scores import keypoint_part_labels
from creaturekit.discovery.result import DiscoveryResult
from creaturekit.errors import ConfigError
from creaturekit.project import Project

_DEFAULT_NAME = re.compile(r"^part(\d+)$")


def part_table(project: Project, result: DiscoveryResult) -> list[dict[str, Any]]:
    """Every part with its name, sizes and sub-concept count (what ``parts --json`` prints)."""
    return [
        {**asdict(p), "name": project.config.part_name(p.index, p.is_background)}
        for p in result.parts
    ]


def part_names(project: Project, result: DiscoveryResult) -> dict[int, str]:
    """Part index -> the name ``mix --NAME`` and the metrics use."""
    return {p.index: project.config.part_name(p.index, p.is_background) for p in result.parts}


def set_part_name(project: Project, result: DiscoveryResult, index: int, name: str) -> None:
    """Name foreground part ``index`` and save the project's settings (under its lock)."""
    set_part_names(project, result, {index: name})


def set_part_names(
    project: Project, result: DiscoveryResult, names: dict[int, str], *, replace: bool = False
) -> None:
    """Name foreground parts (index -> name) in one change of the project's settings
    (under its lock), so names may move between parts (0 -> tail, 1 -> head after a new
    discovery). With ``replace``, another part's old name that is given here now is
    dropped (it named what this discovery calls otherwise); else it is an error."""
    for index, name in names.items():
        part = next((p for p in result.parts if p.index == index), None)
        if part is None:
            raise DiscoveryResultError(
                f"There is no part {index}; parts are 0..{len(result.parts) - 1} "
                "(see `creaturekit parts`)."
            )
        if part.is_background:
            raise ConfigError(
                f'Part {index} is the background; its name is always "{BACKGROUND_PART}".'
            )
        default = _DEFAULT_NAME.match(name)
        if default and int(default.group(1)) != index:
            raise ConfigError(f"{name!r} is the default name of another part; choose another name.")
    given = {str(i): n for i, n in names.items()}
    with project.lock("parts"):
        data = config_to_dict(project.config)
        kept = {
            k: v
            for k, v in data["parts"]["names"].items()
            if k not in given and not (replace and v in given.values())
        }
        data["parts"]["names"] = kept | given
        project.config = config_from_dict(data)  # validates the names
        project.save_config()


def name_part(project: Project, index: int, name: str) -> None:
    """``parts name``: name part ``index`` of the project's discovery result (see
    :func:`set_part_name`), then rebuild ``discovery/report.html`` to show the new name."""
    from creaturekit.discovery.report import refresh_page
    from creaturekit.discovery.result import read_result

    result = read_result(project.discovery_dir)
    with project.lock("parts"):
        set_part_name(project, result, index, name)
        refresh_page(project, result)


def auto_names(project: Project, result: DiscoveryResult) -> dict[int, str]:
    """The majority keypoint of each foreground part (CUB's or the toy world's; else empty)."""
    keypoints = project.keypoints()
    if not keypoints:
        return {}
    records = {r.id: r for r in project.manifest()}
    votes: dict[int, Counter[str]] = {}
    for label, name in keypoint_part_labels(result, records, keypoints):
        votes.setdefault(label, Counter())[name] += 1
    bg = result.background_index
    names: dict[int, str] = {}
    for label, counter in sorted(votes.items()):
        if label == bg or label >= len(result.parts):
            continue
        word = re.sub(r"\W+", "_", counter.most_common(1)[0][0]).strip("_").lower()
        if word and word.isidentifier() and word not in names.values() and word != BACKGROUND_PART:
            names[label] = word
    return names


def name_parts_by_keypoints(project: Project, result: DiscoveryResult) -> dict[int, str]:
    """Name the parts after :func:`auto_names` and save the settings; the names given."""
    names = auto_names(project, result)
    if names:
        from creaturekit.discovery.report import refresh_page

        with project.lock("parts"):
            set_part_names(project, result, names, replace=True)
            refresh_page(project, result)
    return names
