"""Damaged, truncated, wrong-shape or missing project files: one clear error naming the file.

Every case damages a COPY of a discovered (or fitted) project, runs the CLI and expects
exit 1 with the file named, never "This is a bug"; a damaged cache is simply recomputed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from creaturekit import fsutil
from creaturekit.cli import app
from tests.helpers import TINY_MIX_FIT, GuardedRunner, older_metrics, write_image

DISCOVER = ["--backend", "effnet-kmeans", "--parts", "2", "--subconcepts", "2"]
DISCOVER += ["--bg-subconcepts", "2", "--image-size", "64", "--no-report"]
MIX = ["--part0", "1", "--steps", "1", "--size", "16"]
EVAL = ["--combinations", "1", "--n", "1", "--steps", "1", "--size", "16"]
EVAL_IMAGES = ["--image-metrics", "--image-model", "discovery", "--fid-model", "discovery"]
EVAL_IMAGES += ["--clip-model", ""]


# -- ways to damage a file -----------------------------------------------------------------
def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x89not what creaturekit wrote{" * 5)


def fewer_subconcepts(path: Path) -> None:
    """Valid safetensors, but part 0 has one sub-concept fewer than result.json says."""
    tensors = fsutil.load_safetensors(path, framework="numpy")
    tensors["sub.0"] = tensors["sub.0"][:1]
    fsutil.save_safetensors(tensors, path, metadata=fsutil.safetensors_metadata(path))


def other_mapper(path: Path) -> None:
    """A valid token mapper for another vocabulary and text encoder (wrong shape here)."""
    from creaturekit.conditioning.mapper import MapperConfig, TokenMapper

    TokenMapper(MapperConfig(num_codes=(5, 5, 5, 5), dim=48, depth=2)).save(path)


def mapper_weights_unlike_config(path: Path) -> None:
    """The mapper's metadata promises one shape, its tensors have another."""
    tensors = fsutil.load_safetensors(path)
    tensors["code_embedding.weight"] = tensors["code_embedding.weight"][:2]
    fsutil.save_safetensors(tensors, path, metadata=fsutil.safetensors_metadata(path))


def wider_lora(path: Path) -> None:
    """Valid safetensors with every LoRA matrix one row larger (another base model)."""
    import torch

    tensors = fsutil.load_safetensors(path)
    wider = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) for k, v in tensors.items()}
    fsutil.save_safetensors(wider, path, metadata=fsutil.safetensors_metadata(path))


def delete(path: Path) -> None:
    path.unlink()


def not_an_image(path: Path) -> None:
    path.write_text("this is not a picture", encoding="utf-8")


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def project(discovered: Path, tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs"))
    return root


def first_image(root: Path) -> Path:
    row = fsutil.read_jsonl(root / "images" / "manifest.jsonl")[0]
    return root / "images" / row["file"]


def fails_naming(result: object, name: str) -> None:
    """Exit 1 with one clear message that names ``name`` (a file) and is no bug report."""
    out = " ".join(getattr(result, "output", "").split())  # rich wraps long lines
    assert getattr(result, "exit_code", None) == 1, out
    assert name in out, out
    assert "bug" not in out.lower(), out
    assert "Traceback" not in out, out


def invoke(*args: str) -> object:
    return GuardedRunner().invoke(app, list(args))


# -- the discovery result: read by parts, info, mix, eval ----------------------------------
DISCOVERY_DAMAGE = [
    (name, damage)
    for name in ("result.json", "masks.safetensors", "centroids.safetensors", "config.json")
    for damage in (truncate, garbage)
] + [("codes.jsonl", truncate), ("centroids.safetensors", fewer_subconcepts)]


@pytest.mark.parametrize(
    ("name", "damage"), DISCOVERY_DAMAGE, ids=[f"{n}-{d.__name__}" for n, d in DISCOVERY_DAMAGE]
)
def test_parts_names_the_damaged_discovery_file(
    project: Path, name: str, damage: Callable[[Path], None]
) -> None:
    damage(project / "discovery" / name)
    fails_naming(invoke("parts", "-C", str(project)), name)


def test_info_names_a_damaged_result(project: Path) -> None:
    truncate(project / "discovery" / "result.json")
    fails_naming(invoke("info", "-C", str(project)), "result.json")


def test_info_and_compare_name_damaged_metrics(project: Path) -> None:
    for run in ("r1", "r2"):
        fsutil.write_json(project / "eval" / run / "metrics.json", older_metrics())
    truncate(project / "eval" / "r1" / "metrics.json")
    compared = invoke("eval", "-C", str(project), "--compare", "r1", "--compare", "r2")
    fails_naming(compared, "metrics.json")
    assert "r1" in getattr(compared, "output", "")
    garbage(project / "eval" / "r2" / "metrics.json")  # the newest: what info shows
    fails_naming(invoke("info", "-C", str(project)), "metrics.json")


# -- the feature cache: damage is recomputed, not an error --------------------------------
def test_feature_cache_entry_of_another_shape_is_recomputed(project: Path) -> None:
    codes = fsutil.read_jsonl(project / "discovery" / "codes.jsonl")
    entries = sorted((project / "discovery" / "features").rglob("*/*.safetensors"))
    assert entries
    for entry in entries[:3]:
        fsutil.save_safetensors({"features": np.zeros((3, 3, 7), np.float16)}, entry)
    result = invoke("discover", "-C", str(project), *DISCOVER)
    assert getattr(result, "exit_code", None) == 0, getattr(result, "output", "")
    again = fsutil.read_jsonl(project / "discovery" / "codes.jsonl")
    assert [r["codes"] for r in again] == [r["codes"] for r in codes]


# -- images deleted or replaced after import ----------------------------------------------
@pytest.mark.parametrize("damage", [delete, not_an_image])
def test_discover_names_a_missing_or_unreadable_image(
    project: Path, damage: Callable[[Path], None]
) -> None:
    image = first_image(project)
    shutil.rmtree(project / "discovery" / "features")  # no cached features to hide it
    damage(image)
    fails_naming(invoke("discover", "-C", str(project), *DISCOVER), image.name)


def test_two_different_images_can_be_discovered(tmp_path: Path) -> None:
    for i in range(2):
        write_image(tmp_path / "src" / f"img{i}.png", size=(64, 64), seed=i)
    root = tmp_path / "two"
    created = invoke("init", str(root), "--images", str(tmp_path / "src"))
    assert getattr(created, "exit_code", None) == 0, getattr(created, "output", "")
    result = invoke("discover", "-C", str(root), *DISCOVER)
    out = getattr(result, "output", "")
    assert getattr(result, "exit_code", None) == 0, out
    assert "identical" not in out


# -- a fitted run: read by mix and eval ----------------------------------------------------
RUN_DAMAGE = [
    ("runs/r1/mapper.safetensors", truncate),
    ("runs/r1/mapper.safetensors", garbage),
    ("runs/r1/mapper.safetensors", other_mapper),
    ("runs/r1/mapper.safetensors", mapper_weights_unlike_config),
    ("runs/r1/pytorch_lora_weights.safetensors", truncate),
    ("runs/r1/pytorch_lora_weights.safetensors", garbage),
    ("runs/r1/pytorch_lora_weights.safetensors", wider_lora),
    ("runs/r1/vocab.json", truncate),
    ("runs/r1/vocab.json", garbage),
    ("discovery/result.json", garbage),
    ("discovery/centroids.safetensors", fewer_subconcepts),
]


@pytest.mark.parametrize(
    ("name", "damage"), RUN_DAMAGE, ids=[f"{n}-{d.__name__}" for n, d in RUN_DAMAGE]
)
def test_mix_names_the_damaged_file(
    fitted_copy: Path, name: str, damage: Callable[[Path], None]
) -> None:
    damage(fitted_copy / name)
    fails_naming(invoke("mix", "-C", str(fitted_copy), *MIX), Path(name).name)


def test_mix_like_names_damaged_codes(fitted_copy: Path) -> None:
    path = fitted_copy / "discovery" / "codes.jsonl"
    fsutil.write_jsonl(path, [{"id": r["id"], "file": r["file"]} for r in fsutil.read_jsonl(path)])
    fails_naming(invoke("mix", "-C", str(fitted_copy), "--like", "0", *MIX), "codes.jsonl")


def test_eval_names_a_damaged_discoverer_config(fitted_copy: Path) -> None:
    (fitted_copy / "discovery" / "config.json").write_text(json.dumps({"params": {}}), "utf-8")
    fails_naming(invoke("eval", "-C", str(fitted_copy), *EVAL, "--no-image-metrics"), "config.json")


@pytest.mark.parametrize("damage", [delete, not_an_image])
def test_eval_names_a_missing_training_image(
    fitted_copy: Path, damage: Callable[[Path], None]
) -> None:
    image = first_image(fitted_copy)
    damage(image)
    fails_naming(invoke("eval", "-C", str(fitted_copy), *EVAL, *EVAL_IMAGES), image.name)


@pytest.mark.parametrize("damage", [delete, not_an_image])
def test_fit_names_a_missing_training_image(
    fitted_copy: Path, tiny_sd: Path, damage: Callable[[Path], None]
) -> None:
    image = first_image(fitted_copy)
    damage(image)
    flags = ["--preset", "toy", "--model", str(tiny_sd), "--run", "r2", "--steps", "1"]
    flags += ["--resolution", "32", "--batch-size", "2"]  # attn_resolution 16 exists at 32 px
    fails_naming(invoke("fit", "-C", str(fitted_copy), *flags), image.name)


@pytest.mark.parametrize("damage", [truncate, garbage])
def test_damaged_latent_cache_is_encoded_again(
    fitted_copy: Path, tiny_sd: Path, damage: Callable[[Path], None]
) -> None:
    from creaturekit.progress import quiet
    from creaturekit.project import open_project
    from creaturekit.training.fit import fit

    entries = sorted((fitted_copy / "runs" / ".cache").glob("latents-*.safetensors"))
    assert entries
    damage(entries[0])
    with quiet():
        fit(open_project(fitted_copy), preset="toy", run="r2", model=str(tiny_sd), **TINY_MIX_FIT)
    assert fsutil.load_safetensors(entries[0])["latents"].ndim == 4


def test_safetensors_files_get_umask_modes(fitted_project: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    for path in (
        fitted_project / "discovery" / "centroids.safetensors",
        fitted_project / "discovery" / "masks.safetensors",
        fitted_project / "runs" / "r1" / "mapper.safetensors",
        next((fitted_project / "runs" / ".cache").glob("latents-*.safetensors")),
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


def other_tensors(path: Path) -> None:
    """Valid safetensors with one tensor of another shape."""
    import torch

    tensors = fsutil.load_safetensors(path)
    key = next(iter(tensors))
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, *tensors[key].shape[1:])
    fsutil.save_safetensors(tensors, path, metadata=fsutil.safetensors_metadata(path))


ORACLE_DAMAGE = [
    ("oracle.safetensors", truncate),
    ("oracle.safetensors", other_tensors),
    ("oracle.json", garbage),
]


@pytest.mark.parametrize(("name", "damage"), ORACLE_DAMAGE)
def test_damaged_oracle_is_named(tmp_path: Path, name: str, damage: Callable[[Path], None]) -> None:
    from creaturekit.errors import DamagedFileError
    from creaturekit.toy.oracle import CONFIG_NAME, WEIGHTS_NAME, default_dir, load_oracle

    for file in (CONFIG_NAME, WEIGHTS_NAME):
        shutil.copy(default_dir() / file, tmp_path / file)
    damage(tmp_path / name)
    with pytest.raises(DamagedFileError, match=name):
        load_oracle(tmp_path)


@pytest.mark.parametrize("damage", [garbage, "other-shape"])
def test_discover_names_damaged_backbone_weights(
    project: Path, tmp_path: Path, damage: object
) -> None:
    import torch

    weights = tmp_path / "effnet.safetensors"
    fsutil.save_safetensors({"_conv_stem.weight": torch.zeros(1, 1, 1, 1)}, weights)
    if callable(damage):
        damage(weights)
    result = invoke("discover", "-C", str(project), *DISCOVER, "--model", str(weights))
    fails_naming(result, weights.name)


@pytest.mark.parametrize("damage", [truncate, garbage])
def test_demo_skips_a_mix_folder_with_a_damaged_sidecar(
    project: Path, damage: Callable[[Path], None]
) -> None:
    from creaturekit.demo import RUN, _find_mixes
    from creaturekit.project import open_project

    combo = {"part0": 1}
    good, bad = project / "mixes" / "20260101-000000", project / "mixes" / "20260102-000000"
    for folder in (good, bad):
        record = {"run": RUN, "codes": [{"part": "part0", "code": 1}]}
        fsutil.write_json(folder / "mix-000.json", record)
    damage(bad / "mix-000.json")
    assert _find_mixes(open_project(project), [combo]) == good
