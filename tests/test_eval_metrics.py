"""eval's image metrics (similarity, CLIP score, FID/KID) and CUB keypoint figures.

Backbones are tiny random models built from configs, saved with ``save_pretrained`` and
loaded back by folder through the same code path a hub id takes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from creaturekit.cli import app
from creaturekit.errors import ModelNotFoundError
from creaturekit.evaluation.backbones import (
    DiscoveryBackbone,
    HFBackbone,
    InceptionBackbone,
    load_backbone,
)
from creaturekit.evaluation.clip_score import ClipScorer
from creaturekit.evaluation.evaluate import load_metrics
from creaturekit.evaluation.image_metrics import (
    ImageScorer,
    code_means,
    code_similarity,
    fid_kid,
    text_prompt,
)
from creaturekit.evaluation.keypoints import keypoint_scores
from creaturekit.evaluation.metrics import GROUPS
from creaturekit.project import init_project, open_project


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer DINOv2 with its image processor, saved like a downloaded one."""
    from transformers import BitImageProcessor

    from tests.tiny_sd import save_tiny_dinov2

    folder = Path(save_tiny_dinov2(tmp_path_factory.mktemp("tiny-dinov2")))
    crop = {"height": 32, "width": 32}
    BitImageProcessor(size={"shortest_edge": 32}, crop_size=crop).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer CLIPModel with the real CLIP tokenizer (300 merges) and processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from tests.tiny_sd import tiny_text_stack

    tokenizer, text = tiny_text_stack()
    torch.manual_seed(0)
    vision = {
        "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "projection_dim": 32,
    }  # fmt: skip
    config = CLIPConfig(text_config=text.config.to_dict(), vision_config=vision, projection_dim=32)
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def evaluated(fitted_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fitted toy project, with synthetic CUB-style keypoints."""
    root = Path(shutil.copytree(fitted_project, tmp_path_factory.mktemp("eval-metrics") / "proj"))
    shutil.rmtree(root / "eval", ignore_errors=True)
    write_perfect_keypoints(root)
    return root


def write_perfect_keypoints(root: Path) -> None:
    """One keypoint per discovered part label, placed on that label in every image."""
    from creaturekit import fsutil
    from creaturekit.constants import KEYPOINTS_NAME
    from creaturekit.discovery.discover import load_result

    project = open_project(root)
    result = load_result(project)
    records = {r.id: r for r in project.manifest()}
    h, w = result.grid
    rows = []
    for row, mask in zip(result.codes, result.masks, strict=True):
        record = records[row["id"]]
        points = {}
        for label in np.unique(mask):
            r, c = np.argwhere(mask == label)[0]
            x, y = (c + 0.5) * record.width / w, (r + 0.5) * record.height / h
            points[f"kp{label}"] = [float(x), float(y)]
        rows.append({"id": row["id"], "points": points})
    fsutil.write_jsonl(project.images_dir / KEYPOINTS_NAME, rows)


def random_images(n: int, seed: int = 0, size: int = 48) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)) for _ in range(n)]


def test_fid_kid_identical_sets_score_zero_and_different_sets_more() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 6)).astype(np.float32)
    same = fid_kid(real, real)
    shifted = fid_kid(real, real + 2.0)
    assert same["fid"] == pytest.approx(0.0, abs=1e-3) and shifted["fid"] > 20
    # KID is unbiased: about 0 (either sign) for one distribution, far above for two.
    assert abs(same["kid"]) < 0.1 * shifted["kid"]
    small = fid_kid(real, real[:3] + 1.0)
    assert small["kid_subset"] == 3  # KID's subset size adapts to the smaller set
    assert fid_kid(real, real[:1]) == {}  # one image: no covariance, no figure
    assert fid_kid(real, real[:5] + 1, seed=3) == fid_kid(real, real[:5] + 1, seed=3)


def test_code_similarity_known_answer() -> None:
    train = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    codes = [{0: 0, 1: 0}, {0: 1, 1: 0}, {0: 1, 1: 1}]
    means = code_means(train, codes)
    names = {0: "head", 1: "bg"}
    exact = code_similarity(train[:1], [{0: 0}], means, names)
    assert exact["similarity"] == pytest.approx(1.0)  # the only real image with head 0
    mixed = code_similarity(np.array([[0.0, 1.0]]), [{0: 0, 1: 1}], means, names)
    assert mixed["similarity_per_part"]["head"] == pytest.approx(0.0)
    assert mixed["similarity_per_part"]["bg"] == pytest.approx(np.sqrt(0.5))
    assert text_prompt("a photo of a {parts} {category}", "bird") == "a photo of a bird"
    assert text_prompt("{parts}", "bird") == "bird"  # a toy project's bare part tokens


def test_hf_backbone_folder_embeds_and_pools(tiny_dino: Path, discovered: Path) -> None:
    backbone = load_backbone(str(tiny_dino), open_project(discovered), "backbone", "--image-model")
    assert isinstance(backbone, HFBackbone) and backbone.name == str(tiny_dino.resolve())
    images = random_images(3)
    first = backbone.embed(images, "test")
    assert first.shape == (3, 16) and np.allclose(first, backbone.embed(images, "test"))
    assert not np.allclose(first[0], first[1])


def test_discovery_backbone_is_the_projects_own(discovered: Path) -> None:
    project = open_project(discovered)
    backbone = load_backbone("discovery", project, "backbone", "--image-model")
    assert isinstance(backbone, DiscoveryBackbone)
    paths = [project.image_path(r) for r in project.images()[:3]]
    feats = backbone.discoverer.extract(paths)
    np.testing.assert_allclose(
        backbone.embed(paths, "test"), feats.astype(np.float32).mean(axis=1), rtol=1e-6
    )


def test_inception_weights_file_loads_tensors_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local Inception .pth (random weights, saved like torch-fidelity's) takes the real path."""
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as tf

    with monkeypatch.context() as patch:  # an unloaded Inception, only to get its state dict
        patch.setattr(tf, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(tf.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        state = tf.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    torch.save(state, tmp_path / "inception.pth")
    backbone = InceptionBackbone(str(tmp_path / "inception.pth"), "FID/KID backbone", "--fid-model")
    images = random_images(3, size=40)
    feats = backbone.embed(images, "test")
    assert feats.shape == (3, 2048) and np.isfinite(feats).all()
    assert fid_kid(feats, feats)["fid"] == pytest.approx(0.0, abs=1e-2)
    torch.save({"not": object()}, tmp_path / "unsafe.pth")  # pickled code is never run
    with pytest.raises(ModelNotFoundError, match="Could not load the Inception weights"):
        InceptionBackbone(str(tmp_path / "unsafe.pth"), "FID/KID backbone", "--fid-model")


def test_clip_score_matches_the_cosine_of_its_embeddings(tiny_clip: Path) -> None:
    import torch

    scorer = ClipScorer(str(tiny_clip))
    images = random_images(2, seed=1, size=40)
    texts = ["a photo of a bird", "a red dog"]
    scores = scorer.score(images, texts)
    inputs = scorer.processor(text=texts, images=images, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = scorer.net(**inputs)
    cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds, dim=-1)
    np.testing.assert_allclose(scores, 100 * cos.clamp(min=0).numpy(), rtol=1e-4, atol=1e-4)
    assert ((scores >= 0) & (scores <= 100)).all()


def test_scorer_on_training_images_scores_best(discovered: Path, tiny_dino: Path) -> None:
    """The training images themselves: FID ~0; noise images: FID larger, similarity lower."""
    from creaturekit.discovery.discover import load_result

    project = open_project(discovered)
    result = load_result(project)
    scorer = ImageScorer(project, str(tiny_dino), str(tiny_dino), clip_model="")
    scorer.prepare(result)
    names = {m: f"part{m}" for m in range(8)}
    codes = [{int(m): int(k) for m, k in row["codes"].items()} for row in result.codes]
    real = [Image.open(project.images_dir / row["file"]).convert("RGB") for row in result.codes]
    same = scorer.group(codes, real, names, seed=0)
    noise = scorer.group(codes, random_images(len(real)), names, seed=0)
    assert same.fid is not None and noise.fid is not None
    assert same.fid == pytest.approx(0.0, abs=1e-4) and noise.fid > 0.1
    assert same.similarity is not None and noise.similarity is not None
    assert same.similarity > noise.similarity
    assert same.clip_score is None and "CLIP" in scorer.skipped["clip_score"]
    assert scorer.overall(seed=0)["fid"] > same.fid  # both groups pooled


def test_missing_weights_fail_before_generation(discovered: Path, runner: CliRunner) -> None:
    """Offline, missing backbones stop eval at once (this project has no run: had eval
    generated first, it would have complained about the run instead)."""
    base = ["eval", "-C", str(discovered)]
    hub = runner.invoke(app, [*base, "--image-model", "facebook/dinov2-base"])
    assert hub.exit_code == 1
    message = " ".join(hub.stderr.split())
    assert message.startswith(
        "Error: Could not find the image-similarity backbone (eval.image_model) "
        "'facebook/dinov2-base': it is not in the local Hugging Face cache and the hub is "
        "disabled (HF_HUB_OFFLINE=1)."
    )
    assert "--image-model PATH" in message
    clip = runner.invoke(app, [*base, "--clip-model", "openai/clip-vit-base-patch32"])
    assert clip.exit_code == 1 and "openai/clip-vit-base-patch32" in clip.stderr
    assert "--clip-model PATH" in " ".join(clip.stderr.split())
    fid = runner.invoke(app, [*base, "--fid-model", "inception"])
    assert fid.exit_code == 1 and "Inception weights" in fid.stderr and "--fid-model" in fid.stderr
    missing = runner.invoke(app, [*base, "--fid-model", "nowhere/inception.pth"])
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    with pytest.raises(ModelNotFoundError, match=r"eval\.image_model"):
        ImageScorer(open_project(discovered), "facebook/dinov2-base", "discovery", "")


def test_missing_weights_are_refused_before_any_backbone_loads(
    discovered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing CLIP or Inception weights stop the scorer before the (found) similarity
    backbone is loaded: nothing heavy runs on the way to the error."""
    import creaturekit.evaluation.image_metrics as image_metrics

    def loaded(*args: object) -> None:
        raise AssertionError("a backbone was loaded before every model was checked")

    monkeypatch.setattr(image_metrics, "load_backbone", loaded)
    project = open_project(discovered)
    with pytest.raises(ModelNotFoundError, match="CLIP model"):
        ImageScorer(project, "discovery", "discovery", "openai/clip-vit-base-patch32")
    with pytest.raises(ModelNotFoundError, match="Inception weights"):
        ImageScorer(project, "discovery", "inception", "")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        ImageScorer(project, "discovery", "nowhere/inception.pth", "")


def test_keypoint_scores_on_synthetic_keypoints(evaluated: Path, tmp_path: Path) -> None:
    from creaturekit.discovery.discover import load_result

    project = open_project(evaluated)
    scores = keypoint_scores(project, load_result(project))
    assert scores is not None and scores.nmi == pytest.approx(100.0) and scores.keypoints > 0
    assert keypoint_scores(init_project(tmp_path / "plain"), load_result(project)) is None


def test_eval_records_image_metrics_and_keypoint_figures(
    evaluated: Path, tiny_clip: Path, runner: CliRunner
) -> None:
    args = ["eval", "-C", str(evaluated), "--combinations", "2", "--steps", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "similarity" in result.stdout and "clip_score skipped" in result.stdout
    folder = evaluated / "eval" / "r1"
    saved = load_metrics(open_project(evaluated), "r1")
    assert saved.image_metrics is not None
    assert saved.image_metrics.image_model == "discovery"  # the toy project's setting
    assert saved.image_metrics.clip_model is None
    for group in GROUPS:
        image = saved.group(group).image
        assert image is not None and image.similarity is not None and image.fid is not None
        assert -1.0 <= image.similarity <= 1.0 and image.fid >= 0.0
        assert f"{group}_similarity" in saved.overall
    assert (saved.overall["fid"] or -1.0) >= 0.0 and "kid" in saved.overall
    assert saved.discovery is not None and saved.discovery.keypoints is not None
    assert saved.discovery.keypoints.nmi == pytest.approx(100.0)
    assert "nmi" in saved.discovery.world  # the toy ground-truth figures stay
    report = (folder / "report.html").read_text()
    assert "Image metrics" in report and "at the part keypoints" in report

    with_clip = runner.invoke(app, [*args, "--clip-model", str(tiny_clip), "--json"])
    assert with_clip.exit_code == 0, with_clip.output
    data = json.loads(with_clip.stdout)
    assert 0.0 <= data["seen"]["image"]["clip_score"] <= 100.0
    assert data["image_metrics"]["clip_text"] == "creature"  # the toy template: "{parts}"
    assert "seen_clip_score" in data["overall"]

    off = runner.invoke(app, [*args, "--no-image-metrics", "--json"])
    assert off.exit_code == 0 and "image_metrics" not in json.loads(off.stdout)


@pytest.mark.weights
def test_real_backbones_load(discovered: Path) -> None:
    """The real defaults, when their weights are in the local cache (skipped otherwise)."""
    try:
        scorer = ImageScorer(
            open_project(discovered),
            "facebook/dinov2-base",
            "inception",
            "openai/clip-vit-base-patch32",
        )
    except ModelNotFoundError as err:
        pytest.skip(f"real weights not available offline: {err}")
    assert scorer.clip is not None
