"""A plain-data summary of a project (what ``creaturekit info`` shows)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from creaturekit import fsutil
from creaturekit.evaluation.metrics import Metrics
from creaturekit.project import Project
from creaturekit.training.run import list_runs


def project_summary(project: Project) -> dict[str, Any]:
    """Images, parts, runs and the latest metrics of ``project``, as JSON-ready data."""
    records = project.manifest()
    result_path = project.discovery_dir / "result.json"
    parts = None
    if result_path.is_file():
        result = fsutil.read_json(result_path)
        try:
            parts = [
                {**p, "name": project.config.part_name(p["index"], p.get("is_background", False))}
                for p in result.get("parts", [])
            ]
        except (AttributeError, KeyError, TypeError) as err:
            raise fsutil.damaged(result_path, f"no valid part list: {err}") from None
    runs = [run.path.name for run in list_runs(project)]
    return {
        "root": str(project.root),
        "name": project.config.project.name,
        "category": project.config.project.category,
        "images": {
            "total": len(records),
            "by_split": dict(sorted(Counter(r.split for r in records).items())),
            "by_dataset": dict(sorted(Counter(r.dataset for r in records).items())),
            "labelled": sum(r.label is not None for r in records),
        },
        "parts": parts,
        "runs": runs,
        "metrics": _latest_metrics(project),
    }


def _latest_metrics(project: Project) -> dict[str, Any] | None:
    files = sorted(project.eval_dir.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    figures = Metrics.read(files[-1]).overall
    values = {k: v for k, v in figures.items() if v is not None}
    return {"run": files[-1].parent.name, "values": values}
