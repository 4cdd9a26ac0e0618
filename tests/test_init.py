"""`init` and image import: the three source layouts, odd images, bad input, portability."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from creaturekit import init_project, open_project
from creaturekit.cli import app
from creaturekit.errors import ImageSourceError, ProjectExistsError
from tests.helpers import write_image


def test_folder_import_copies_and_records(tmp_path: Path, image_folder: Path) -> None:
    project = init_project(tmp_path / "proj", images=image_folder)
    records = project.manifest()
    assert [r.id for r in records] == [1, 2, 3, 4, 5, 6]
    assert {r.file for r in records} == {f"group{i % 2}/img{i}.jpg" for i in range(6)}
    for r in records:
        copied = project.image_path(r)
        assert copied.is_file() and not copied.is_symlink()
        assert copied.read_bytes() == (image_folder / r.source).read_bytes()
        assert r.dataset == "folder" and r.label is None and r.split == "train"
    assert project.config.project.name == "proj"
    assert (project.root / "creaturekit.toml").is_file()


def test_reimport_does_not_duplicate(tmp_path: Path, image_folder: Path) -> None:
    project = init_project(tmp_path / "proj", images=image_folder)
    write_image(image_folder / "new.png", seed=99)
    report = project.add_images(image_folder)
    assert report.added == 1 and report.already_present == 6
    assert len(project.manifest()) == 7


def test_existing_project_needs_force(tmp_path: Path, image_folder: Path) -> None:
    init_project(tmp_path / "proj", images=image_folder)
    with pytest.raises(ProjectExistsError, match="--force"):
        init_project(tmp_path / "proj")
    project = init_project(tmp_path / "proj", force=True, name="renamed")
    assert project.config.project.name == "renamed"
    assert len(project.manifest()) == 6


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(ImageSourceError, match="does not exist"):
        init_project(tmp_path / "a", images=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageSourceError, match="No images found"):
        init_project(tmp_path / "b", images=tmp_path / "empty")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_nothing_importable_leaves_no_project(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ImageSourceError, match="could be imported"):
        init_project(tmp_path / "proj", images=src)
    assert not (tmp_path / "proj").exists()


def _odd_images(src: Path) -> dict[str, str]:
    """Write one file per awkward case; return file name -> expected outcome."""
    src.mkdir(parents=True)
    write_image(src / "ok.jpg", seed=1)
    write_image(src / "cmyk.jpg", seed=2, mode="CMYK")
    write_image(src / "gray.png", seed=3, mode="L")
    write_image(src / "palette.png", seed=4, mode="P")
    rgba = Image.fromarray(np.full((70, 70, 4), 128, np.uint8), "RGBA")
    rgba.save(src / "alpha.png")
    Image.fromarray((np.arange(80 * 80).reshape(80, 80) * 10).astype(np.uint16)).save(
        src / "deep16.png"
    )
    rotated = Image.fromarray(np.zeros((64, 100, 3), np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    rotated.save(src / "exif.jpg", exif=exif)
    write_image(src / "tiny.png", size=(40, 200), seed=5)
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    (src / "truncated.png").write_bytes((src / "ok.jpg").read_bytes()[:200])
    shutil.copy(src / "ok.jpg", src / "zz_copy_of_ok.jpg")
    (src / "readme.txt").write_text("hello")
    write_image(src / "bitmap.bmp", seed=6, fmt="BMP")
    return {
        "ok.jpg": "kept",
        "cmyk.jpg": "converted",
        "gray.png": "converted",
        "palette.png": "converted",
        "alpha.png": "converted",
        "deep16.png": "converted",
        "exif.jpg": "converted",
        "bitmap.bmp": "converted",
        "tiny.png": "too small",
        "corrupt.jpg": "corrupt",
        "truncated.png": "corrupt",
        "zz_copy_of_ok.jpg": "duplicate",
        "readme.txt": "not an image",
    }


def test_odd_images_are_converted_or_skipped_with_reasons(tmp_path: Path) -> None:
    expected = _odd_images(tmp_path / "src")
    project = init_project(tmp_path / "proj", images=tmp_path / "src")
    report = project.last_import()
    assert report is not None
    converted = dict(report.converted)
    skipped = dict(report.skipped)
    for name, outcome in expected.items():
        if outcome == "kept":
            assert name not in converted and name not in skipped
        elif outcome == "converted":
            assert name in converted, name
        else:
            assert outcome in skipped[name], (name, skipped.get(name))
    by_source = {r.source: r for r in project.manifest()}
    assert set(by_source) == {n for n, o in expected.items() if o in ("kept", "converted")}
    for r in by_source.values():
        with Image.open(project.image_path(r)) as im:
            assert im.mode == "RGB" and im.size == (r.width, r.height)
    assert by_source["exif.jpg"].width == 64 and by_source["exif.jpg"].height == 100
    assert by_source["exif.jpg"].file == "exif.png"
    with Image.open(project.image_path(by_source["alpha.png"])) as im:
        assert im.getpixel((5, 5)) == (191, 191, 191)  # grey 128 at alpha 128 over white
    with Image.open(project.image_path(by_source["deep16.png"])) as im:
        assert max(im.getextrema()[0]) > 200  # scaled to 8 bits, not clipped to white/black


def _fake_cub(root: Path) -> Path:
    cub = root / "CUB_200_2011"
    rows, splits, labels = [], [], []
    for i in range(1, 7):
        cls = "001.Black_footed_Albatross" if i <= 3 else "002.Laysan_Albatross"
        rel = f"{cls}/bird_{i}.jpg"
        write_image(cub / "images" / rel, seed=10 + i)
        rows.append(f"{i} {rel}")
        splits.append(f"{i} {1 if i % 2 else 0}")
        labels.append(f"{i} {1 if i <= 3 else 2}")
    (cub / "images.txt").write_text("\n".join(rows) + "\n")
    (cub / "train_test_split.txt").write_text("\n".join(splits) + "\n")
    (cub / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (cub / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    (cub / "parts").mkdir()
    (cub / "parts" / "parts.txt").write_text("1 back\n2 beak\n")
    (cub / "parts" / "part_locs.txt").write_text(
        "1 1 10.0 20.0 1\n1 2 0.0 0.0 0\n2 2 30.5 40.5 1\n"
    )
    return cub


def test_cub_layout(tmp_path: Path) -> None:
    cub = _fake_cub(tmp_path)
    project = init_project(tmp_path / "birds", images=cub / "images")
    records = project.manifest()
    assert len(records) == 6
    assert {r.dataset for r in records} == {"cub"}
    by_source = {r.source: r for r in records}
    first = by_source["001.Black_footed_Albatross/bird_1.jpg"]
    assert first.label == "001.Black_footed_Albatross" and first.split == "train"
    assert by_source["002.Laysan_Albatross/bird_4.jpg"].split == "test"
    assert len(project.images()) == 3  # images.split defaults to "train"
    assert len(project.images("all")) == 6
    points = project.keypoints()
    assert points[first.id] == {"back": (10.0, 20.0)}  # invisible beak dropped
    assert points[by_source["001.Black_footed_Albatross/bird_2.jpg"].id] == {"beak": (30.5, 40.5)}
    report = project.last_import()
    assert report is not None and report.kind == "cub" and report.keypoints == 2


def test_cub_train_split_only(tmp_path: Path) -> None:
    cub = _fake_cub(tmp_path)
    project = init_project(tmp_path / "birds", images=cub, split="train")
    assert {r.split for r in project.manifest()} == {"train"}
    assert len(project.manifest()) == 3


def test_stanford_dogs_layout(tmp_path: Path) -> None:
    from scipy.io import savemat

    dogs = tmp_path / "dogs"
    files = []
    for i, breed in enumerate(["n02085620-Chihuahua", "n02085782-Japanese_spaniel"] * 2):
        rel = f"{breed}/{breed.split('-')[0]}_{i}.jpg"
        write_image(dogs / "Images" / rel, seed=30 + i)
        files.append(rel)
    (dogs / "lists").mkdir()
    cell = np.empty((3, 1), dtype=object)
    for i, rel in enumerate(files[:3]):
        cell[i, 0] = np.array([rel])
    savemat(dogs / "lists" / "train_list.mat", {"file_list": cell})
    test_cell = np.empty((1, 1), dtype=object)
    test_cell[0, 0] = np.array([files[3]])
    savemat(dogs / "lists" / "test_list.mat", {"file_list": test_cell})
    project = init_project(tmp_path / "proj", images=dogs / "Images")
    by_source = {r.source: r for r in project.manifest()}
    assert set(by_source) == set(files)
    assert by_source[files[0]].label == "Chihuahua"
    assert by_source[files[1]].label == "Japanese spaniel"
    assert [by_source[f].split for f in files] == ["train", "train", "train", "test"]


def test_link_mode(tmp_path: Path, image_folder: Path) -> None:
    project = init_project(tmp_path / "proj", images=image_folder, link=True)
    for r in project.manifest():
        path = project.image_path(r)
        assert path.is_symlink() and path.read_bytes() == (image_folder / r.source).read_bytes()


def test_project_folder_is_portable(tmp_path: Path, image_folder: Path, runner: CliRunner) -> None:
    init_project(tmp_path / "proj", images=image_folder)
    for path in (tmp_path / "proj").rglob("*"):
        if path.is_file():
            assert str(tmp_path) not in path.read_text(errors="ignore"), path
    moved = tmp_path / "elsewhere" / "copy"
    shutil.move(str(tmp_path / "proj"), moved)
    project = open_project(moved / "images")  # found from a sub-folder, like git
    assert project.root == moved.resolve()
    assert all(project.image_path(r).is_file() for r in project.manifest())
    result = runner.invoke(app, ["info", "-C", str(moved), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"]["total"] == 6


def test_interrupted_import_keeps_manifest_consistent(
    tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> None:
    import creaturekit.images as images_mod

    real = images_mod.open_for_import
    calls = {"n": 0}

    def flaky(path: Path, min_side: int):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(path, min_side)

    monkeypatch.setattr(images_mod, "open_for_import", flaky)
    result = runner.invoke(app, ["init", str(tmp_path / "proj"), "--images", str(image_folder)])
    assert result.exit_code == 130
    assert "Interrupted" in result.stderr
    project = open_project(tmp_path / "proj")
    records = project.manifest()
    assert len(records) == 3
    on_disk = {
        p.relative_to(project.images_dir).as_posix() for p in project.images_dir.rglob("*.jpg")
    }
    assert on_disk == {r.file for r in records}
    assert (
        not list(project.root.rglob("*.tmp")) and not (project.root / ".creaturekit.lock").exists()
    )
    monkeypatch.setattr(images_mod, "open_for_import", real)
    resumed = runner.invoke(
        app, ["init", str(tmp_path / "proj"), "--images", str(image_folder), "--force"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert len(project.manifest()) == 6


def test_real_photo_smoke(tmp_path: Path) -> None:
    from skimage import data

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(data.chelsea()).save(src / "chelsea.jpg", quality=95)
    project = init_project(tmp_path / "cat", images=src)
    (record,) = project.manifest()
    assert (record.width, record.height) == (451, 300)
    assert os.path.getsize(project.image_path(record)) > 10_000
