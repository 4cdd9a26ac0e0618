"""``creaturekit fit``: stage 2, part tokens through a projector, LoRA, attention loss."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from creaturekit.cli.common import (
    JsonOpt,
    ProjectOpt,
    QuietOpt,
    console,
    handle_errors,
    open_cli_project,
    print_json,
)


def register(app: typer.Typer) -> None:
    app.command("fit")(handle_errors(fit))


def fit(
    preset: Annotated[
        str | None,
        typer.Option(help="Hyper-parameter preset: sd15 (reference), sdxl or toy (CPU)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Base model: preset name, hub id or local folder.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Total optimisation steps.", min=1)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per micro-batch.", min=1)] = None,
    grad_accum: Annotated[
        int | None, typer.Option(help="Micro-batches per optimisation step.", min=1)
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (mapper; LoRA too).")] = None,
    lora_lr: Annotated[
        float | None, typer.Option(help="LoRA's own learning rate (default: --lr).", min=0)
    ] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank; 0 = no LoRA.", min=0)] = None,
    attn_loss: Annotated[
        float | None, typer.Option(help="Attention-loss weight lambda; 0 disables it.", min=0)
    ] = None,
    resolution: Annotated[int | None, typer.Option(help="Training image side (px).")] = None,
    attn_resolution: Annotated[
        int | None,
        typer.Option(help="Side of the cross-attention maps the attention loss uses.", min=1),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="auto, fp32, fp16 or bf16 (CPU: fp32 or bf16; the VAE stays fp32)."),
    ] = None,
    optimizer: Annotated[
        str | None,
        typer.Option(help="adamw, or adamw8bit (8-bit states; needs creaturekit[bnb])."),
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        typer.Option(
            "--gradient-checkpointing/--no-gradient-checkpointing",
            help="Trade compute for memory.",
            show_default=False,
        ),
    ] = None,
    checkpoint_minutes: Annotated[
        float | None,
        typer.Option(
            help="Also checkpoint when this many minutes passed since the last checkpoint "
            "(0: only every checkpoint_every steps).",
            min=0,
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any other fit setting as KEY=VALUE, repeatable (e.g. --set "
            'lr_schedule=cosine; every setting: docs/method.md, "Fit settings").',
        ),
    ] = None,
    run: Annotated[str, typer.Option(help="Run name (folder under runs/).")] = "default",
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run from its newest intact checkpoint, with its own saved "
            "settings (flags given here change them, e.g. --steps).",
        ),
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    num_processes: Annotated[
        int,
        typer.Option(
            "--num-processes",
            min=1,
            help="Train in N processes on this machine (one per GPU, or gloo on the CPU).",
        ),
    ] = 1,
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Train the part tokens' mapper and the UNet LoRA on the discovered parts."""
    from creaturekit.config import parse_assignments
    from creaturekit.paths import check_name
    from creaturekit.training.fit import fit as run_fit
    from creaturekit.training.fit import launch

    check_name(run, "Run name")
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(launch(num_processes, worker_command_line(sys.argv[1:])))

    flags = {
        "model": model,
        "steps": steps,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "lr": lr,
        "lora_lr": lora_lr,
        "rank": rank,
        "attn_loss": attn_loss,
        "resolution": resolution,
        "attn_resolution": attn_resolution,
        "seed": seed,
        "precision": precision,
        "optimizer": optimizer,
        "gradient_checkpointing": gradient_checkpointing,
        "checkpoint_minutes": checkpoint_minutes,
    }
    for key, value in parse_assignments(set_ or [], "--set", "lr_schedule=cosine").items():
        if flags.get(key) is None:  # a named flag wins over --set
            flags[key] = value
    result = run_fit(
        open_cli_project(project), preset=preset, run=run, resume=resume, device=device, **flags
    )
    summary = {
        "run": result.run_dir.name,
        "path": str(result.run_dir),
        "step": result.step,
        "loss": result.loss,
        "seconds": round(result.seconds, 1),
    }
    if json_output:
        print_json(summary)
    elif not quiet:
        loss = f"{result.loss:.4f}" if result.loss is not None else "n/a"
        console.print(
            f"[bold green]Run {summary['run']}[/]: {result.step} steps, final loss "
            f"{loss}, {summary['seconds']} s -> {result.run_dir}"
        )


def worker_command_line(args: list[str]) -> list[str]:
    """The workers' command line: ``args`` minus ``--num-processes N`` (the workers are the
    N) and minus a top-level ``-C DIR`` (``creaturekit -C DIR fit``: they start in DIR)."""
    out: list[str] = []
    it = iter(args)
    for arg in it:  # top-level options, up to the sub-command
        if arg == "-C":
            next(it, None)
        elif not arg.startswith("-C"):
            out.append(arg)
            if not arg.startswith("-"):
                break
    for arg in it:
        if arg == "--num-processes":
            next(it, None)
        elif not arg.startswith("--num-processes="):
            out.append(arg)
    return out
