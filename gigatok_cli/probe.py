"""`gigatok probe gpt|tokenizer`: linear probing of frozen features (docs/recipes.md#linear-probing)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gigatok_cli._common import console, handle_errors, out, progress_bar
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options, maybe_launch
from gigatok_cli.launch_worker import global_progress
from gigatok_cli.options import (
    HUB_HELP,
    DeviceOpt,
    PairedTokenizerOpt,
    TokenizerCheckpointOpt,
    TokenizerOpt,
    _listed,
    completer,
    hub_weights,
)
from gigatok_core import registry
from gigatok_core.errors import GigatokError

app = typer.Typer(
    help="Linear probing (the official protocol, docs/recipes.md#linear-probing): a BatchNorm + linear head trained with LARS on "
    "frozen features, 90 epochs with 10 of warm-up then cosine, top-1/top-5 on the val split every epoch. "
    "Outputs RUN_DIR/metrics.jsonl, RUN_DIR/results.json; a killed run resumes from its last epoch.",
    no_args_is_help=True,
)

# ---------------------------------------------------------------------------------------------
# Shared options
# ---------------------------------------------------------------------------------------------
TrainOpt = Annotated[Path, typer.Option("--train-split", help="ImageFolder tree to train the head on.")]
ValOpt = Annotated[Path, typer.Option("--val-split", help="ImageFolder tree with the same class folders.")]
OutputOpt = Annotated[Path, typer.Option("--output", help="RUN_DIR: metrics, results, checkpoint, features.")]
EpochsOpt = Annotated[int, typer.Option("--max-epochs", help="Epochs of the schedule (official 90).")]
WarmupOpt = Annotated[
    float | None, typer.Option("--warmup-epochs", help="Warm-up epochs (default: 10 of every 90).")
]
SubsetOpt = Annotated[int | None, typer.Option("--subset", help="Use only the first N images per class.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per batch per process (official 128).")]
BlrOpt = Annotated[
    float, typer.Option("--blr", help="Base lr: lr = blr x global batch / 256 (official 0.1).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Head init, data order and augmentation seed.")]
CacheOpt = Annotated[
    bool,
    typer.Option(
        "--cache-features",
        help="Compute the frozen features once (backbone in eval mode) and reuse them; default: the "
        "official online protocol (every epoch re-augments and re-encodes).",
    ),
]
DrawsOpt = Annotated[
    int,
    typer.Option(
        "--cache-draws", help="With --cache-features: augmented draws per train image (0: centre crop)."
    ),
]
CacheDirOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="Feature cache folder (default RUN_DIR/features).")
]
AugmentOpt = Annotated[
    bool, typer.Option("--augment/--no-augment", help="Online train augmentation (ADM random crop + flip).")
]
WorkersOpt = Annotated[int, typer.Option("--workers", help="DataLoader workers decoding images.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML file of probe settings.")]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Restart a run folder holding another probe.")
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Probe settings as key=value (e.g. momentum=0.95 lr=0.2), applied last.", show_default=False
    ),
]


def _config(
    *,
    precision: str,
    max_epochs: int,
    warmup_epochs: float | None,
    subset: int | None,
    batch_size: int,
    blr: float,
    seed: int,
    cache_features: bool,
    cache_draws: int,
    cache_dir: Path | None,
    augment: bool,
    workers: int,
    layer: int | None,
    config_file: Path | None,
    overrides: list[str] | None,
):
    """Command-line options -> a validated ProbeConfig (options, then --config, then key=value)."""
    from gigatok_core.config import build_config
    from gigatok_core.probe import ProbeConfig

    base = {
        "epochs": max_epochs,
        "warmup_epochs": warmup_epochs,
        "subset": subset,
        "batch_size": batch_size,
        "blr": blr,
        "seed": seed,
        "precision": precision,
        "cache_features": cache_features,
        "cache_draws": cache_draws,
        "cache_dir": str(cache_dir) if cache_dir else None,
        "augment": augment,
        "workers": workers,
        "layer": layer,
    }
    bad = [o for o in overrides or [] if "=" not in o]
    if bad:
        raise GigatokError(
            f"unexpected argument {bad[0]!r}", hint="settings are written key=value, e.g. momentum=0.95"
        )
    return build_config(ProbeConfig, base, config_file, list(overrides or []))


def _default_precision(precision: str | None, device: str | None, gpt: bool) -> str:
    """Official: fp16 autocast for GPT probes (on CUDA), fp32 for tokenizer probes and on CPU."""
    if precision:
        return precision
    from gigatok_core.dist import resolve_device

    return "fp16" if gpt and resolve_device(device).type == "cuda" else "fp32"


@contextlib.contextmanager
def _progress() -> Iterator[tuple[Any, Callable[[dict[str, Any]], None]]]:
    """(on_progress, on_epoch) for the library: transient bars, one line per epoch (rank 0 only)."""
    from gigatok_core.dist import dist_info

    main = dist_info().is_main
    with progress_bar("probe", enabled=main, rate="batch/s") as on_progress:
        on_progress = global_progress(on_progress)  # a launched run's bar counts every rank

        def on_epoch(row: dict[str, Any]) -> None:
            if main:
                console.print(
                    f"epoch {row['epoch']}: top-1 {row['top1']:.2f}%  top-5 {row['top5']:.2f}%  "
                    f"train loss {row['loss']:.4f}  val loss {row['val_loss']:.4f}  lr {row['lr']:.3g}",
                    highlight=False,
                    soft_wrap=True,
                )

        yield on_progress, on_epoch


def _render(title: str, result: Any, output: Path) -> None:
    table = Table(title=title)
    for col in ("epoch", "top-1 %", "top-5 %", "train loss", "val loss"):
        table.add_column(col, justify="right")
    for r in result.history:
        table.add_row(
            str(r["epoch"]),
            f"{r['top1']:.2f}",
            f"{r['top5']:.2f}",
            f"{r['loss']:.4f}",
            f"{r['val_loss']:.4f}",
        )
    out.print(table)
    out.print(
        f"final top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}% -> {output / 'results.json'}",
        highlight=False,
    )


def _preset_of(checkpoint: Path | None) -> str | None:
    """The GPT preset a gigatok GPT checkpoint (file, run or checkpoint folder) records; its paired
    tokenizer is found by the loader (:func:`gigatok_core.ar.load.resolve_gpt`)."""
    from gigatok_core.config.source import describe_checkpoint

    meta = describe_checkpoint(checkpoint, kind="gpt") if checkpoint is not None else None
    preset = (meta or {}).get("preset")
    return preset if isinstance(preset, str) else None


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
@app.command(
    "gpt",
    help="Probe a GPT: null-class input, block n_layer//2 mean-pooled (docs/recipes.md#linear-probing).",
)
@handle_errors
@launch_options
def gpt(
    train_split: TrainOpt,
    val_split: ValOpt,
    output: OutputOpt,
    overrides: OverridesArg = None,
    *,
    gpt: Annotated[
        str | None,
        typer.Option(
            "--gpt",
            "-g",
            help=f"GPT preset ({_listed(registry.gpt_names())}) or released pair "
            f"({_listed(registry.release_names())}); may be left out with a gigatok run's --gpt-checkpoint.",
            autocompletion=completer("--gpt"),
        ),
    ] = None,
    gpt_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--gpt-checkpoint",
            help="GPT weights file, or a `gigatok train gpt` RUN_DIR (latest checkpoint, EMA preferred)."
            + HUB_HELP,
            callback=hub_weights,
        ),
    ] = None,
    tokenizer: PairedTokenizerOpt = None,
    tokenizer_checkpoint: TokenizerCheckpointOpt = None,
    layer: Annotated[
        int | None, typer.Option("--layer", help="Feature block, 1-based (default n_layer // 2).")
    ] = None,
    max_epochs: EpochsOpt = 90,
    warmup_epochs: WarmupOpt = None,
    subset: SubsetOpt = None,
    batch_size: BatchOpt = 128,
    blr: BlrOpt = 0.1,
    device: DeviceOpt = "auto",
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision", help="fp32, bf16, fp16 (default: fp16 on CUDA as official, fp32 on CPU)."
        ),
    ] = None,
    cache_features: CacheOpt = False,
    cache_draws: DrawsOpt = 0,
    cache_dir: CacheDirOpt = None,
    augment: AugmentOpt = True,
    workers: WorkersOpt = 0,
    seed: SeedOpt = 0,
    config_file: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    from gigatok_core.probe import probe_gpt, probe_gpt_files

    gpt = gpt or _preset_of(gpt_checkpoint)
    if gpt is None:
        raise GigatokError("--gpt is required", hint="name the GPT preset, e.g. --gpt gpt-b@xl-xxl")
    cfg = _config(
        precision=_default_precision(precision, device, True),
        max_epochs=max_epochs,
        warmup_epochs=warmup_epochs,
        subset=subset,
        batch_size=batch_size,
        blr=blr,
        seed=seed,
        cache_features=cache_features,
        cache_draws=cache_draws,
        cache_dir=cache_dir,
        augment=augment,
        workers=workers,
        layer=layer,
        config_file=config_file,
        overrides=overrides,
    )
    fetch = functools.partial(
        probe_gpt_files,
        gpt,
        train_split,
        val_split,
        subset=cfg.subset,
        tokenizer=tokenizer,
        gpt_checkpoint=gpt_checkpoint,
        tokenizer_checkpoint=tokenizer_checkpoint,
    )
    if maybe_launch(launch, prefetch=fetch):
        return
    with _progress() as (on_progress, on_epoch):
        result = probe_gpt(
            gpt,
            train_split,
            val_split,
            output,
            config=cfg,
            tokenizer=tokenizer,
            gpt_checkpoint=gpt_checkpoint,
            tokenizer_checkpoint=tokenizer_checkpoint,
            device=device,
            overwrite=overwrite,
            on_epoch=on_epoch,
            on_progress=on_progress,
        )
    if result is not None:
        _render(f"linear probe: {gpt}", result, output)


@app.command(
    "tokenizer",
    help="Probe a tokenizer's encoder (or --fix-dim, --from-decoder) features (docs/recipes.md#linear-probing).",
)
@handle_errors
@launch_options
def tokenizer(
    train_split: TrainOpt,
    val_split: ValOpt,
    output: OutputOpt,
    overrides: OverridesArg = None,
    *,
    tokenizer: TokenizerOpt,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", help="Tokenizer weights instead of the preset's." + HUB_HELP, callback=hub_weights
        ),
    ] = None,
    fix_dim: Annotated[
        bool,
        typer.Option(
            "--fix-dim", help="Features after the encoder's conv_out (z channels), before quant_conv."
        ),
    ] = False,
    from_decoder: Annotated[
        bool, typer.Option("--from-decoder", help="Features of the ViT decoder (after its ln_post).")
    ] = False,
    max_epochs: EpochsOpt = 90,
    warmup_epochs: WarmupOpt = None,
    subset: SubsetOpt = None,
    batch_size: BatchOpt = 128,
    blr: BlrOpt = 0.1,
    device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option("--precision", help="fp32 (official), bf16, fp16.")] = "fp32",
    cache_features: CacheOpt = False,
    cache_draws: DrawsOpt = 0,
    cache_dir: CacheDirOpt = None,
    augment: AugmentOpt = True,
    workers: WorkersOpt = 0,
    seed: SeedOpt = 0,
    config_file: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    from gigatok_core.probe import probe_tokenizer, probe_tokenizer_files

    if fix_dim and from_decoder:
        raise GigatokError(
            "--fix-dim and --from-decoder exclude each other", hint="pick one feature location"
        )
    mode = "fix_dim" if fix_dim else "decoder" if from_decoder else "encoder"
    cfg = _config(
        precision=precision,
        max_epochs=max_epochs,
        warmup_epochs=warmup_epochs,
        subset=subset,
        batch_size=batch_size,
        blr=blr,
        seed=seed,
        cache_features=cache_features,
        cache_draws=cache_draws,
        cache_dir=cache_dir,
        augment=augment,
        workers=workers,
        layer=None,
        config_file=config_file,
        overrides=overrides,
    )
    fetch = functools.partial(
        probe_tokenizer_files, tokenizer, train_split, val_split, subset=cfg.subset, checkpoint=checkpoint
    )
    if maybe_launch(launch, prefetch=fetch):
        return
    with _progress() as (on_progress, on_epoch):
        result = probe_tokenizer(
            tokenizer,
            train_split,
            val_split,
            output,
            config=cfg,
            checkpoint=checkpoint,
            mode=mode,
            device=device,
            overwrite=overwrite,
            on_epoch=on_epoch,
            on_progress=on_progress,
        )
    if result is not None:
        _render(f"linear probe: tokenizer {tokenizer} ({mode})", result, output)
