"""export (issue 23): names tied to the run, metadata, the bundled file, the README, import-run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from creaturekit import fsutil
from creaturekit.cli import app
from creaturekit.errors import CreatureKitError
from creaturekit.generation.export import MARKER, RUN_DIR, export_run, token_names
from creaturekit.generation.kohya import kohya_to_diffusers
from creaturekit.generation.mix import Mixer
from creaturekit.generation.requests import Vocabulary
from creaturekit.project import open_project
from creaturekit.training.run import RunFolder, RunVocab, VocabPart
from tests.consumers import a1111_embeddings, a1111_sd_version
from tests.helpers import fit_runs

FAST = {"steps": 2, "size": 16}


@pytest.fixture(scope="module")
def fitted(discovered: Path, tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with run ``r1`` (LoRA rank 4) and run ``r0`` (part tokens only, rank 0)."""
    root = tmp_path_factory.mktemp("export") / "proj"
    return fit_runs(discovered, root, tiny_sd, {"r1": {}, "r0": {"rank": 0}})


def export(runner: CliRunner, project: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["export", "-C", str(project), *args])
    return result.exit_code, result.stderr


def test_two_runs_share_one_embeddings_folder(fitted: Path, tmp_path: Path) -> None:
    project = open_project(fitted)
    webui = tmp_path / "webui-embeddings"
    webui.mkdir()
    for run in ("r1", "r0"):
        folder = export_run(project, "a1111", run=run, out=tmp_path / run)
        for f in (folder / "embeddings").iterdir():
            shutil.copy(f, webui)  # what a user does with both exports
    vectors = {**a1111_embeddings(tmp_path / "r1"), **a1111_embeddings(tmp_path / "r0")}
    assert len(list(webui.iterdir())) == 2 * 6 == len(vectors)
    assert vectors["r1_part0_1"].shape == (1, 32) and "r0_part0_1" in vectors
    assert not torch.equal(vectors["r1_part0_1"], vectors["r0_part0_1"])
    readme = (tmp_path / "r1" / "README.md").read_text()
    assert "part0: r1_part0_0 ... r1_part0_1" in readme and "bg: r1_bg_0 ... r1_bg_1" in readme


def test_name_template_is_checked(fitted: Path, tmp_path: Path, runner: CliRunner) -> None:
    vocab = Vocabulary(RunFolder(fitted / "runs" / "r1").vocab(), open_project(fitted).config)
    assert token_names(vocab, "my.run")["part0", 1] == "my_run_part0_1"
    assert token_names(vocab, "r", "{part}-{code:03d}")["bg", 1] == "bg-001"
    for bad, said in [
        ("{part}", "must hold {part} and {code}"),
        ("{part}_{code}_{seed}", "no other fields"),
        ("{part}_{code", "must hold"),
        ("{part} {code}", "which UIs cannot type"),
        ("{part}_{code}!", "which UIs cannot type"),
        ("{run}{code}", "must hold"),
    ]:
        with pytest.raises(CreatureKitError, match=said):
            token_names(vocab, "r1", bad)
    with pytest.raises(CreatureKitError, match="Unknown format code 'd'"):
        token_names(vocab, "r1", "{part:03d}_{code}")
    config = open_project(fitted).config
    config.parts.names = {"0": "p1", "1": "P"}
    parts = [
        VocabPart(0, False, "p1", 2, "<part_0>", 1),
        VocabPart(1, False, "P", 12, "<part_1>", 2),
    ]
    clashing = RunVocab("stamp", "hash", "creature", parts)
    with pytest.raises(CreatureKitError, match="gives 'p10' and 'P10', one name to the UIs"):
        token_names(Vocabulary(clashing, config), "r1", "{part}{code}")
    code, err = export(
        runner, fitted, "--name-template", "{part}{code}", "--out", str(tmp_path / "x")
    )
    assert code == 0, err  # part0_1 -> part01, part1_0 -> part10: distinct here
    code, err = export(runner, fitted, "--name-template", "{part}", "--out", str(tmp_path / "y"))
    assert code == 1 and "--name-template '{part}' must hold {part} and {code}" in err
    assert not (tmp_path / "y").exists()


def test_a1111_lora_metadata(fitted: Path, tmp_path: Path) -> None:
    folder = export_run(open_project(fitted), "a1111", run="r1", out=tmp_path / "out")
    for stem in ("r1_lora", "r1_bundle"):
        meta = fsutil.safetensors_metadata(folder / f"{stem}.safetensors")
        assert meta["ss_output_name"] == stem  # A1111's alias = the file name
        assert meta["ss_network_module"] == "networks.lora"
        assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "4.0"
        assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_v2"] == "False"
        assert a1111_sd_version(meta) == "SD1"
        assert meta["ss_steps"] == "2" and meta["ss_resolution"] == "(16, 16)"
        assert meta["ss_sd_model_name"] == "tiny-sd0"  # the local base's folder name only
        assert meta["modelspec.sai_model_spec"] == "1.0.1"
        assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
        assert meta["modelspec.implementation"] == "diffusers"
        assert meta["modelspec.title"] == "creaturekit r1"
        assert meta["modelspec.resolution"] == "16x16"
        assert meta["modelspec.trigger_phrase"] == "r1_part0_0, r1_part1_0, r1_bg_0"
        assert "r1_part0_0 ... r1_part0_1" in meta["modelspec.description"]
    tokens_only = export_run(open_project(fitted), "a1111", run="r0", out=tmp_path / "r0")
    meta = fsutil.safetensors_metadata(tokens_only / "r0_bundle.safetensors")
    assert "ss_network_dim" not in meta and meta["ss_base_model_version"] == "sd_v1"


def test_bundle_holds_the_lora_and_every_embedding(fitted: Path, tmp_path: Path) -> None:
    folder = export_run(open_project(fitted), "a1111", run="r1", out=tmp_path / "out")
    bundle = fsutil.load_safetensors(folder / "r1_bundle.safetensors")
    lora = fsutil.load_safetensors(folder / "r1_lora.safetensors")
    assert all(torch.equal(bundle[k], v) for k, v in lora.items())
    embedded = a1111_embeddings(folder / "r1_bundle.safetensors")  # A1111's bundle reading
    files = a1111_embeddings(folder)  # A1111's embeddings folder
    assert set(embedded) == set(files) and len(files) == 6
    assert all(torch.equal(embedded[n], files[n]) for n in files)
    assert set(bundle) == set(lora) | {f"bundle_emb.{n}.string_to_param.*" for n in files}


def test_readme_of_a_run_without_lora(fitted: Path, tmp_path: Path) -> None:
    for fmt in ("a1111", "diffusers"):
        folder = export_run(open_project(fitted), fmt, run="r0", out=tmp_path / fmt)
        readme = (folder / "README.md").read_text()
        assert "LoRA: none" in readme and "load_lora_weights" not in readme
        assert "<lora:r0_lora" not in readme and "r0_lora.safetensors" not in readme
        assert not list(folder.glob("*lora*"))
    assert "<lora:r0_bundle:1>" in (tmp_path / "a1111" / "README.md").read_text()


def test_a1111_embeddings_in_diffusers_need_their_tokens(fitted: Path, tiny_sd: Path) -> None:
    """The README's call for diffusers with the A1111 files gives the diffusers export's
    prompt embeddings; without ``token=`` every file would become the token ``emb_params``."""
    from diffusers import StableDiffusionPipeline

    from creaturekit.conditioning.tokens import tokenize

    project = open_project(fitted)
    a1111 = export_run(project, "a1111", run="r1", out=fitted.parent / "a1111-tokens")
    readme = (a1111 / "README.md").read_text()
    assert (
        "token=[f.stem for f in files]" in readme and "weight_name='r1_lora.safetensors'" in readme
    )
    diffusers = export_run(project, "diffusers", run="r1", out=fitted.parent / "diffusers-tokens")
    prompt = "a photo of a {0}part0_1{1} {0}bg_0{1} creature"
    encoded = []
    for folder, token in ((a1111, True), (diffusers, False)):
        pipe = StableDiffusionPipeline.from_pretrained(
            tiny_sd, safety_checker=None, requires_safety_checker=False
        )
        files = sorted((folder / "embeddings").glob("*.safetensors"))
        stems = [f.stem for f in files]
        pipe.load_textual_inversion([str(f) for f in files], token=stems if token else None)
        text = prompt.format("r1_", "") if token else prompt.format("<r1_", ">")
        with torch.no_grad():
            encoded.append(pipe.text_encoder(tokenize(pipe.tokenizer, [text]))[0])
    assert torch.allclose(encoded[0], encoded[1], atol=1e-6)


@pytest.mark.parametrize("fmt", ["diffusers", "a1111"])
def test_import_run_mixes_like_the_original(
    fmt: str, fitted: Path, tmp_path: Path, runner: CliRunner
) -> None:
    source = tmp_path / "proj"
    shutil.copytree(fitted, source)
    export_run(open_project(source), fmt, run="r1", out=tmp_path / "shared")
    shutil.rmtree(source / "runs" / "r1")  # a project that has the discovery, not the run
    result = runner.invoke(app, ["import-run", "-C", str(source), str(tmp_path / "shared")])
    assert result.exit_code == 0, result.output
    imported = source / "runs" / "r1"
    assert sorted(p.name for p in imported.iterdir()) == [
        "config.toml",
        "log.jsonl",
        "mapper.safetensors",
        "pytorch_lora_weights.safetensors",
        "vocab.json",
    ]
    original = fsutil.load_safetensors(fitted / "runs" / "r1" / "pytorch_lora_weights.safetensors")
    back = fsutil.load_safetensors(imported / "pytorch_lora_weights.safetensors")
    assert back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in back)
    request = {"part0": [1], "bg": [0]}
    ours = Mixer(open_project(source), "r1")(request, seed=4, **FAST).images[0]
    theirs = Mixer(open_project(fitted), "r1")(request, seed=4, **FAST).images[0]
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    if fmt == "diffusers":
        from creaturekit.evaluation.evaluate import evaluate

        metrics = evaluate(open_project(source), "r1", combinations=2, steps=1, image_metrics=False)
        assert metrics.run == "r1" and (source / "eval" / "r1" / "metrics.json").is_file()

    again = runner.invoke(app, ["import-run", "-C", str(source), str(tmp_path / "shared")])
    assert (
        again.exit_code == 1 and "exists already" in again.stderr and "--run NAME" in again.stderr
    )
    renamed = runner.invoke(
        app,
        ["import-run", "-C", str(source), str(tmp_path / "shared"), "--run", "shared", "--json"],
    )
    assert renamed.exit_code == 0 and json.loads(renamed.stdout)["run"] == "shared"


def test_import_run_refuses_other_discoveries_and_non_exports(
    fitted: Path, tmp_path: Path, runner: CliRunner
) -> None:
    project = open_project(fitted)
    export_run(project, "a1111", run="r0", out=tmp_path / "shared")
    other = tmp_path / "other"
    shutil.copytree(fitted, other, ignore=shutil.ignore_patterns("runs"))
    result_file = other / "discovery" / "result.json"
    fsutil.write_json(result_file, fsutil.read_json(result_file) | {"stamp": "20260101-000000-x"})
    result = runner.invoke(app, ["import-run", "-C", str(other), str(tmp_path / "shared")])
    assert result.exit_code == 1 and "trained on another discovery result" in result.stderr
    assert not (other / "runs" / "r0").exists()

    (tmp_path / "plain").mkdir()
    result = runner.invoke(app, ["import-run", "-C", str(fitted), str(tmp_path / "plain")])
    assert result.exit_code == 1 and "is not a creaturekit export" in result.stderr
    marker = fsutil.read_json(tmp_path / "shared" / MARKER)
    fsutil.write_json(tmp_path / "shared" / MARKER, marker | {"complete": False})
    result = runner.invoke(app, ["import-run", "-C", str(fitted), str(tmp_path / "shared")])
    assert result.exit_code == 1 and "unfinished export" in result.stderr
    fsutil.write_json(tmp_path / "shared" / MARKER, marker)
    (tmp_path / "shared" / RUN_DIR / "mapper.safetensors").unlink()
    result = runner.invoke(
        app, ["import-run", "-C", str(fitted), str(tmp_path / "shared"), "--run", "again"]
    )
    assert result.exit_code == 1 and "older creaturekit" in result.stderr
    assert not (fitted / "runs" / "again").exists() and not list((fitted / "runs").glob(".import*"))


def test_import_run_names_what_is_wrong_in_an_export(
    fitted: Path, tmp_path: Path, runner: CliRunner
) -> None:
    shared = export_run(open_project(fitted), "a1111", run="r1", out=tmp_path / "shared")

    def import_again() -> str:
        result = runner.invoke(app, ["import-run", "-C", str(fitted), str(shared), "--run", "x"])
        assert result.exit_code == 1 and not (fitted / "runs" / "x").exists()
        return result.stderr

    lora = fsutil.load_safetensors(shared / "r1_lora.safetensors")
    fsutil.save_safetensors(
        lora | {"lora_te_x.alpha": torch.ones(())}, shared / "r1_lora.safetensors"
    )
    assert "r1_lora.safetensors: 'lora_te_x.alpha' is not a LoRA key creaturekit writes" in (
        import_again()
    )
    (shared / RUN_DIR / "vocab.json").write_text("[]")
    assert "vocab.json is damaged or incomplete (no valid part list" in import_again()
    marker = fsutil.read_json(shared / MARKER)
    fsutil.write_json(shared / MARKER, marker | {"run": "../../elsewhere"})
    assert "The run name in" in import_again() and "is not allowed" in import_again()


def test_kohya_keys_convert_back_exactly(fitted: Path) -> None:
    from creaturekit.generation.kohya import diffusers_to_kohya

    state = fsutil.load_safetensors(fitted / "runs" / "r1" / "pytorch_lora_weights.safetensors")
    back = kohya_to_diffusers(diffusers_to_kohya(state, 4))
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    with pytest.raises(CreatureKitError, match="not a LoRA key creaturekit writes"):
        kohya_to_diffusers({"lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": torch.ones(())})
