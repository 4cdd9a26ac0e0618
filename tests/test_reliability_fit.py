"""fit never loses work, never runs code from a received project, never misreports a mistake.

Tiny fits (2-4 steps) on the discovered toy project and the tiny SD pipeline.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import Result

from creaturekit.cli import app
from creaturekit.errors import CreatureKitError, DamagedFileError, UnsafePathError
from creaturekit.progress import quiet
from creaturekit.project import open_project
from creaturekit.training.trainer import FitInterrupted
from tests.helpers import GuardedRunner, failing_objective, tiny_trainer

#: creaturekit.toml [fit] overrides that make a CLI fit tiny (the sd15 preset otherwise).
TINY_TOML = {
    "resolution": 16,
    "batch_size": 2,
    "grad_accum": 1,
    "lr": 1e-3,
    "attn_resolution": 8,
    "projector_depth": 2,
    "checkpoint_every": 1,
    "sample_every": 0,
    "log_every": 1,
}


@pytest.fixture
def project(discovered: Path, tiny_sd: Path, tmp_path: Path) -> Path:
    """A fresh copy of the discovered toy project whose creaturekit.toml makes fits tiny."""
    root = tmp_path / "proj"
    shutil.copytree(discovered, root, ignore=shutil.ignore_patterns("runs"))
    proj = open_project(root)
    proj.config.fit.overrides = {**TINY_TOML, "model": str(tiny_sd)}
    proj.save_config()
    return root


def _fit(root: Path, *args: str, say: bool = False) -> Result:
    """``creaturekit fit -C root --model TINY ARGS`` (the model as the user's own flag)."""
    model = open_project(root).config.fit.overrides["model"]
    quiet = [] if say else ["-q"]
    return GuardedRunner().invoke(app, ["fit", "-C", str(root), "--model", model, *quiet, *args])


def _log_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


# -- 1. foreign code --------------------------------------------------------------------

PLANTED = ("typer", "torch", "creaturekit", "accelerate")


def _plant(folder: Path) -> Path:
    """Modules in ``folder`` that leave a marker file if Python ever imports them."""
    markers = folder / "markers"
    for name in PLANTED:
        (folder / f"{name}.py").write_text(
            f"open({str(markers / name)!r}, 'w').write('ran')\n"
            f"raise SystemExit('planted {name}.py ran')\n"
        )
    markers.mkdir()
    return markers


@pytest.mark.parametrize("version", [(3, 10), (3, 11)])
def test_worker_command_ignores_the_current_folder(
    tmp_path: Path, version: tuple[int, int]
) -> None:
    from creaturekit.training.fit import worker_args

    markers = _plant(tmp_path)
    done = subprocess.run(
        [sys.executable, *worker_args(version), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage" in done.stdout and not list(markers.iterdir())


def test_two_process_fit_never_imports_from_the_project(project: Path) -> None:
    """`fit --num-processes 2` inside a received project with a planted typer.py etc.; a
    SIGTERM to the launcher (a scheduler's stop) checkpoints like Ctrl-C, and it resumes."""
    markers = _plant(project)
    proj = open_project(project)  # no periodic checkpoint: the only one is the stop's own
    proj.config.fit.overrides = {**proj.config.fit.overrides, "checkpoint_every": 100000}
    proj.save_config()
    command = [
        str(Path(sys.executable).parent / "creaturekit"),  # the installed command
        *("fit", "--run", "ddp", "--num-processes", "2", "-q"),
        *("--model", open_project(project).config.fit.overrides["model"]),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = project / "runs" / "ddp" / "log.jsonl"
    first = subprocess.Popen(
        [*command, "--steps", "10000"], cwd=project, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        while first.poll() is None and not (log.is_file() and log.read_text()):
            time.sleep(0.2)
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    assert not list(markers.iterdir()), stderr[-3000:]
    assert first.returncode == 130, stderr[-3000:]
    assert "saved. Continue with" in stderr and "--run ddp --resume --num-processes 2" in stderr
    saved = int(_only(project / "runs" / "ddp" / "checkpoints").name.split("-")[1])
    again = subprocess.run(
        [*command, "--steps", str(saved + 1), "--resume"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert not list(markers.iterdir()), again.stderr[-3000:]
    assert again.returncode == 0, again.stderr[-3000:]
    assert (project / "runs" / "ddp" / "mapper.safetensors").is_file()
    assert _log_steps(project / "runs" / "ddp") == list(range(1, saved + 2))


def _only(folder: Path) -> Path:
    (found,) = folder.iterdir()
    return found


# -- 2. run names -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../evil", "ABSOLUTE", ".cache", "a/b"])
def test_run_names_outside_runs_are_refused(project: Path, tmp_path: Path, name: str) -> None:
    name = str(tmp_path / "abs-run") if name == "ABSOLUTE" else name
    for command in (["fit", "--steps", "1"], ["fit", "--resume"], ["mix", "--n", "1"], ["export"]):
        result = GuardedRunner().invoke(app, [*command, "-C", str(project), "--run", name])
        assert result.exit_code == 1, (command, result.output)
        assert "Run name" in result.stderr, (command, result.stderr)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "abs-run").exists()
    from creaturekit.training.run import run_folder

    with pytest.raises(UnsafePathError, match="Run name"):
        run_folder(open_project(project), name)


def test_run_listings_skip_folders_that_are_not_runs(project: Path) -> None:
    from creaturekit.errors import StageMissingError
    from creaturekit.generation.mix import latest_run
    from creaturekit.summary import project_summary
    from creaturekit.training.fit_config import FitConfig
    from creaturekit.training.run import RunFolder, RunVocab

    proj = open_project(project)
    cache = proj.runs_dir / ".cache"
    cache.mkdir(parents=True)
    (cache / "mapper.safetensors").write_bytes(b"")  # not a run, whatever it holds
    (proj.runs_dir / "stray-folder").mkdir()
    RunFolder(proj.runs_dir / "real").start(FitConfig(), RunVocab("s", "h", "creature", []), "toy")
    assert project_summary(proj)["runs"] == ["real"]
    with pytest.raises(StageMissingError, match="no fitted run"):
        latest_run(proj)


# -- 3. resume --------------------------------------------------------------------------


def test_ctrl_c_hint_names_the_run(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing_objective(monkeypatch, at_call=2, failure=KeyboardInterrupt)  # mid step 2
    result = _fit(project, "--run", "my-run", "--steps", "3")
    assert result.exit_code == 130, result.output
    message = " ".join(result.stderr.split())
    assert "checkpoint step-000001 saved" in message
    assert f"creaturekit fit -C {project.resolve()} --run my-run --resume" in message


def test_resume_keeps_the_runs_own_settings(project: Path) -> None:
    run = project / "runs" / "own"
    first = _fit(project, "--run", "own", "--steps", "2", "--lr", "2e-3")
    assert first.exit_code == 0, first.output
    proj = open_project(project)  # the toml now asks for other values: they must not apply
    proj.config.fit.overrides = {**proj.config.fit.overrides, "steps": 40, "rank": 8}
    proj.save_config()
    again = _fit(project, "--run", "own", "--resume")
    assert again.exit_code == 0, again.output
    assert _log_steps(run) == [1, 2]
    saved = (run / "config.toml").read_text()
    assert "steps = 2\n" in saved and "lr = 0.002\n" in saved and "rank = 4\n" in saved
    # a flag given on the command line changes the run, and the change is said
    more = _fit(project, "--run", "own", "--resume", "--steps", "3", say=True)
    assert more.exit_code == 0, more.output
    assert "steps: 2 -> 3" in more.stderr and _log_steps(run) == [1, 2, 3]
    assert "steps = 3\n" in (run / "config.toml").read_text()
    refused = _fit(project, "--run", "own", "--resume", "--rank", "8")
    assert refused.exit_code == 1 and "these differ: rank" in refused.stderr


def test_damaged_newest_checkpoint_falls_back_to_the_previous(project: Path) -> None:
    from creaturekit.training import checkpoint as ckpt

    run = project / "runs" / "dmg"
    assert _fit(project, "--run", "dmg", "--steps", "2").exit_code == 0
    checkpoints = run / "checkpoints"
    lora = checkpoints / "step-000002" / "lora.safetensors"
    lora.write_bytes(lora.read_bytes()[:-100])  # truncated
    resumed = _fit(project, "--run", "dmg", "--resume", "--steps", "3", say=True)
    assert resumed.exit_code == 0, resumed.output
    warning = " ".join(resumed.stderr.split())
    assert "step-000002" in warning and "damaged" in warning and "step-000001 instead" in warning
    assert (checkpoints / "damaged-step-000002").is_dir() and _log_steps(run) == [1, 2, 3]
    # one changed byte inside a tensor: safetensors still reads it, the recorded hash not
    optimizer = checkpoints / "step-000003" / "optimizer.safetensors"
    data = bytearray(optimizer.read_bytes())
    data[-1] ^= 0xFF
    optimizer.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match=r"optimizer\.safetensors"):
        ckpt.read_checkpoint(optimizer.parent, 0, lora=True)
    # every checkpoint damaged: nothing is resumed from, and the user is told
    for folder in ckpt.list_checkpoints(checkpoints):
        (folder / "state.json").write_text("{")
    failed = _fit(project, "--run", "dmg", "--resume", "--steps", "4")
    assert failed.exit_code == 1 and "No intact checkpoint" in failed.stderr


# -- 4. signals and the time cadence ----------------------------------------------------


class _Killed(Exception):
    """What SIGTERM raises in this test when fit does not handle it itself."""


def test_sigterm_checkpoints_like_ctrl_c_and_resumes_exactly(
    discovered: Path, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from creaturekit.training.objective import Objective

    real = Objective.__call__
    calls = {"n": 0}

    def terminated(self: Objective, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 6:  # mid step 3 (2 micro-batches a step)
            os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler sends
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    def killed(signum: int, frame: object) -> None:
        raise _Killed

    project = open_project(discovered)
    run = project.runs_dir / "sigterm"
    previous = signal.signal(signal.SIGTERM, killed)
    try:
        with quiet():
            tiny_trainer(project, tiny_sd, "sigterm-reference", checkpoint_every=100).fit()
            with monkeypatch.context() as m:
                m.setattr(Objective, "__call__", terminated)
                with pytest.raises(FitInterrupted, match=r"step 2.*--run sigterm --resume"):
                    tiny_trainer(project, tiny_sd, "sigterm", checkpoint_every=100).fit()
            assert signal.getsignal(signal.SIGTERM) is killed  # restored after the fit
            assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000002"]
            tiny_trainer(project, tiny_sd, "sigterm", resume=True, checkpoint_every=100).fit()
    finally:
        signal.signal(signal.SIGTERM, previous)
    a = load_file(str(run / "mapper.safetensors"))
    b = load_file(str(project.runs_dir / "sigterm-reference" / "mapper.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_also_come_after_minutes(discovered: Path, tiny_sd: Path) -> None:
    from creaturekit import fsutil
    from creaturekit.training.run import CONFIG_FILE, RunFolder

    project = open_project(discovered)
    with quiet():
        result = tiny_trainer(
            project, tiny_sd, "minutes", steps=3, checkpoint_every=100, checkpoint_minutes=1e-9
        ).fit()
    names = sorted(p.name for p in (result.run_dir / "checkpoints").iterdir())
    assert names == ["step-000001", "step-000002", "step-000003"]
    run = RunFolder(result.run_dir)  # a run from before checkpoint_minutes stays resumable
    older = run.saved_config()
    del older["fit"]["checkpoint_minutes"]
    fsutil.write_toml(run.path / CONFIG_FILE, older)
    with quiet():
        tiny_trainer(project, tiny_sd, "minutes", resume=True, steps=4, checkpoint_every=100).fit()
    assert _log_steps(result.run_dir)[-1] == 4


# -- 5. bad numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--lr", "nan", "lr must be a finite number"),
        ("--lr", "inf", "lr must be a finite number"),
        ("--lr", "0", "lr must be positive"),
        ("--lr", "-1", "lr must be positive"),
        ("--seed", str(2**70), "seed must be between 0 and"),
        ("--seed", "-1", "seed must be between 0 and"),
    ],
)
def test_bad_numbers_are_refused_at_input(
    project: Path, flag: str, value: str, message: str
) -> None:
    result = _fit(project, "--run", "bad", "--steps", "2", flag, value)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert not (project / "runs" / "bad").exists()


def test_a_diverging_lr_stops_with_the_nan_message(project: Path) -> None:
    result = _fit(project, "--run", "huge", "--steps", "4", "--lr", "1e9")
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert "became NaN/inf" in message and "--run huge" in message
    assert not (project / "runs" / "huge" / "mapper.safetensors").exists()


def test_a_nan_attention_map_gives_a_nan_loss_not_an_error() -> None:
    from creaturekit.training.losses import attention_loss

    maps = torch.rand(2, 3, 16)
    maps[0, 1, 2] = float("nan")
    assert torch.isnan(attention_loss(maps, torch.zeros(2, 4, 4, dtype=torch.long)))


@pytest.mark.parametrize("writing", ["checkpoint", "outputs"])
def test_full_disk_in_a_safetensors_write_is_reported(
    project: Path, monkeypatch: pytest.MonkeyPatch, writing: str
) -> None:
    import safetensors.torch
    from safetensors import SafetensorError

    real = safetensors.torch.save_file
    calls = {"n": 0}

    def full(tensors: object, filename: str, **kwargs: object) -> None:
        calls["n"] += 1
        # the first checkpoint writes 3 files; or the final LoRA (diffusers' writer)
        if calls["n"] > 5 if writing == "checkpoint" else "pytorch_lora_weights" in filename:
            raise SafetensorError(
                'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No'
                ' space left on device" })'
            )
        real(tensors, filename, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    result = _fit(project, "--run", "full", "--steps", "3")
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert "No space left" in message and "Free disk space" in message
    assert "--run full --resume" in message
    checkpoints = project / "runs" / "full" / "checkpoints"
    kept = (
        ["step-000001"]
        if writing == "checkpoint"
        else ["step-000001", "step-000002", "step-000003"]
    )
    assert sorted(p.name for p in checkpoints.iterdir()) == kept
    assert not (project / "runs" / "full" / "pytorch_lora_weights.safetensors").exists()


def test_written_files_follow_the_umask(discovered: Path, tiny_sd: Path) -> None:
    project = open_project(discovered)
    mask = os.umask(0o022)
    try:
        with quiet():
            result = tiny_trainer(project, tiny_sd, "modes", steps=2).fit()
    finally:
        os.umask(mask)
    run = result.run_dir
    files = [run / "mapper.safetensors", run / "pytorch_lora_weights.safetensors"]
    files += sorted((run / "checkpoints" / "step-000002").iterdir())
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {
        p.name: "0o644" for p in files
    }


# -- 6. read-only folders ---------------------------------------------------------------


def test_a_read_only_run_folder_is_a_clear_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creaturekit import fsutil

    run = project / "runs" / "locked"
    real = fsutil.atomic_path

    def read_only(path: str | os.PathLike[str]) -> object:
        if Path(path).parent == run:  # as mkstemp in a folder without write permission
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(fsutil, "atomic_path", read_only)
    with pytest.raises(CreatureKitError, match=f"{run}.*Permission denied"):
        from creaturekit.training.fit import fit

        with quiet():
            fit(open_project(project), run="locked", steps=2)
    result = _fit(project, "--run", "locked", "--steps", "2")
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert str(run) in message and "writable" in message and "bug" not in message
