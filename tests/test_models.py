"""Model references: presets, local folders and hub ids take one loading path; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from creaturekit.errors import ConfigError, ModelNotFoundError
from creaturekit.models import (
    PRESETS,
    check_weights_available,
    load_pretrained,
    resolve_model,
    select_device,
    select_dtype,
)


def test_presets_resolve_to_hub_ids() -> None:
    ref = resolve_model("sd15")
    assert ref.kind == "preset" and ref.location == PRESETS["sd15"]
    assert resolve_model("facebook/dinov2-base").kind == "hub"


def test_local_folder_relative_to_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "proj" / "models" / "sd").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    ref = resolve_model("models/sd", base=tmp_path / "proj")
    assert ref.kind == "local" and Path(ref.location) == (tmp_path / "proj/models/sd").resolve()


@pytest.mark.parametrize("ref", ["./nope", "/definitely/not/here", "~/no/such/model", "a/b/c"])
def test_missing_folder(ref: str) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(ref)


def test_offline_hub_id_gives_one_clear_sentence() -> None:
    from transformers import AutoModel

    with pytest.raises(ModelNotFoundError) as err:
        load_pretrained(AutoModel.from_pretrained, "facebook/dinov2-base", "feature backbone")
    message = str(err.value)
    assert "facebook/dinov2-base" in message and "--model PATH" in message
    assert "HF_HUB_OFFLINE" in message and "\n" not in message


def test_missing_hub_weights_are_refused_without_loading_and_cached_ones_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    model = resolve_model("facebook/dinov2-base")
    with pytest.raises(ModelNotFoundError) as err:
        check_weights_available(model, "feature backbone", "--image-model")
    message = str(err.value)  # the sentence loading it would give
    assert "'facebook/dinov2-base'" in message and "--image-model PATH" in message
    assert "HF_HUB_OFFLINE=1" in message and "\n" not in message
    repo = tmp_path / "models--facebook--dinov2-base"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    check_weights_available(model, "feature backbone", "--image-model")  # cached: loads
    check_weights_available(resolve_model(str(repo)), "feature backbone")  # a folder: loads
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    check_weights_available(resolve_model("facebook/dinov2-small"), "feature backbone")  # online


def test_tiny_text_encoder_round_trips_through_the_hub_path(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers import CLIPTextConfig, CLIPTextModel
    from transformers.utils.logging import is_progress_bar_enabled

    config = CLIPTextConfig(
        vocab_size=100,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPTextModel(config).save_pretrained(tmp_path / "te")
    capfd.readouterr()
    loaded = load_pretrained(CLIPTextModel.from_pretrained, str(tmp_path / "te"), "text encoder")
    assert "Loading weights" not in capfd.readouterr().err  # our progress, not a bar per load
    assert is_progress_bar_enabled() and not are_progress_bars_disabled()  # both restored
    ids = torch.tensor([[1, 2, 3]])
    again = CLIPTextModel.from_pretrained(tmp_path / "te")
    assert "Loading weights" in capfd.readouterr().err
    assert torch.equal(loaded(ids).last_hidden_state, again(ids).last_hidden_state)


def test_tiny_unet_round_trips(tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel

    from tests.tiny_sd import tiny_unet

    tiny_unet(cross_dim=16).save_pretrained(tmp_path / "unet")
    loaded = load_pretrained(UNet2DConditionModel.from_pretrained, str(tmp_path / "unet"), "UNet")
    assert loaded.config.cross_attention_dim == 16


def test_base_model_saved_in_fp16_loads_in_fp32(tmp_path: Path) -> None:
    """Like the bundled toy base: fp16 files, fp32 networks (CPU training and mixing)."""
    from diffusers import StableDiffusionPipeline

    from creaturekit.conditioning.base_model import load_base_model
    from tests.tiny_sd import save_tiny_pipeline

    save_tiny_pipeline(tmp_path / "fp32")
    StableDiffusionPipeline.from_pretrained(tmp_path / "fp32").to(torch.float16).save_pretrained(
        tmp_path / "fp16"
    )
    base = load_base_model(str(tmp_path / "fp16"))
    for module in (base.text_encoder, base.vae, base.unet):
        assert {p.dtype for p in module.parameters()} == {torch.float32}
    half = load_base_model(str(tmp_path / "fp16"), dtype=torch.float16)
    assert next(half.unet.parameters()).dtype == torch.float16


def test_incomplete_local_folder(tmp_path: Path) -> None:
    from transformers import CLIPTextModel

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="from the folder"):
        load_pretrained(CLIPTextModel.from_pretrained, str(tmp_path / "empty"), "text encoder")


def test_device_and_precision() -> None:
    cpu = torch.device("cpu")
    assert select_dtype(cpu) is torch.float32
    with pytest.raises(ConfigError, match="not supported"):
        select_dtype(cpu, "fp16")
    with pytest.raises(ConfigError, match="Unknown precision"):
        select_dtype(cpu, "fp8")
    if not torch.cuda.is_available():
        assert select_device().type in ("cpu", "mps")
        with pytest.raises(ConfigError, match="no CUDA"):
            select_device("cuda")


def test_bundled_preset_missing_is_explained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from creaturekit import models

    monkeypatch.setitem(models.BUNDLED, "toy", tmp_path / "absent")
    with pytest.raises(ModelNotFoundError, match="not included in this version"):
        resolve_model("toy")
    (tmp_path / "absent").mkdir()
    ref = resolve_model("toy")
    assert ref.kind == "preset" and ref.location == str(tmp_path / "absent")
