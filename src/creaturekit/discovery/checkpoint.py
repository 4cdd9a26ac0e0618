"""The learnt centroids of a discovery run, kept until its result is written (resume).

Learning the centroids is the step between extraction (resumable through the feature
cache) and the streaming pass that codes every image; its checkpoint is one safetensors
file whose metadata holds the evidence (JSON) and a key of everything it depends on
(backbone, options, scale, the images' content hashes), so a run resumes from it only
with the same inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from creaturekit import fsutil
from creaturekit.discovery.hierarchy import Learnt
from creaturekit.errors import DamagedFileError

CHECKPOINT_FILE = ".learnt.safetensors"


def checkpoint_key(settings: dict[str, Any], digests: Sequence[str]) -> str:
    """A hash of ``settings`` (JSON-able) and the images' content hashes, in order."""
    text = json.dumps(settings, sort_keys=True, default=str) + "\n" + "\n".join(digests)
    return hashlib.sha256(text.encode()).hexdigest()


def save_learnt(path: Path, key: str, learnt: Learnt) -> None:
    """Write ``learnt`` to ``path`` atomically, under ``key``."""
    evidence = json.dumps(learnt.evidence(), allow_nan=False, default=str)
    fsutil.save_safetensors(learnt.tensors(), path, metadata={"key": key, "evidence": evidence})


def load_learnt(path: Path, key: str) -> Learnt | None:
    """The checkpoint at ``path`` if it was written under ``key``; None when it is absent,
    from other inputs, or damaged (then the centroids are learnt again)."""
    if not path.is_file():
        return None
    try:
        meta = fsutil.safetensors_metadata(path)
        if meta.get("key") != key:
            return None
        tensors = fsutil.load_safetensors(path, framework="numpy")
        return Learnt.from_parts(tensors, json.loads(meta["evidence"]))
    except (DamagedFileError, OSError, KeyError, TypeError, ValueError, IndexError):
        return None
