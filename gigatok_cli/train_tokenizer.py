"""`gigatok train tokenizer`: the official tokenizer recipe on an image folder (docs/recipes.md#tokenizer).

Registered on the ``train`` group by :mod:`gigatok_cli.train` (this module never imports it; the
helpers both training commands share are in :mod:`gigatok_cli.train_common`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gigatok_cli._common import handle_errors
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.run import request_options
from gigatok_cli.train_common import run_options, run_training
from gigatok_core.config.requests import TokenizerTrainRequest

# the run settings `train tokenizer` takes as options (the others: run.KEY=VALUE)
TOKENIZER_RUN_OPTIONS = (
    "max_steps", "batch_size", "grad_accum", "lr", "seed", "save_every", "keep", "log_every",
    "sample_every", "device", "precision", "strategy", "ema", "compile", "on_nan",
)  # fmt: skip


@handle_errors
@launch_options
@run_options(
    *TOKENIZER_RUN_OPTIONS,
    help={
        "sample_every": "Steps between reconstruction grids (RUN_DIR/samples).",
        "compile": "torch.compile the model (default: off, as the official recipe).",
    },
)
@request_options("TokenizerTrainRequest")
def tokenizer(request: TokenizerTrainRequest, run: dict[str, Any], launch: LaunchOptions = SINGLE) -> None:
    """Train a VQ tokenizer with the official GigaTok recipe (or fine-tune one with --init)."""
    from gigatok_core.config import TokenizerTrainConfig
    from gigatok_core.train.tokenizer.task import prefetch_tokenizer_training, train_tokenizer

    r = request
    cfg = TokenizerTrainConfig.from_options(
        r.preset, config_file=r.config, overrides=r.overrides or [], **run
    )
    run_training(
        cfg,
        launch,
        label="tokenizer",
        what=f"tokenizer {r.preset}",
        output=Path(r.output),
        prefetch=lambda: prefetch_tokenizer_training(cfg, frozen=r.frozen, init=r.init, data=r.data),
        train=lambda **show: train_tokenizer(
            cfg,
            data=r.data,
            output=r.output,
            init=r.init,
            frozen=r.frozen,
            num_workers=r.workers,
            resume=r.resume,
            overwrite=r.overwrite,
            **show,
        ),
    )
