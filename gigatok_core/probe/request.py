"""One probe run as a typed request: the backbone, the two splits, RUN_DIR and the recipe.

    request = ProbeRequest.build("gpt", "imagenet/train", "imagenet/val", "runs/probe-b",
                                 gpt="gpt-b@xl-xxl", overrides=["momentum=0.95"])
    request.required_files()   # fetch every weights file the run reads (the launcher's parent)
    result = request.run()     # the ProbeResult on rank 0

:meth:`ProbeRequest.build` makes every decision a run needs before anything loads, for the command
line and for Python code alike: the recipe (:class:`~gigatok_core.probe.run.ProbeConfig` from the
given settings, then a YAML file, then ``key=value`` items), the official precision when none is
given (:func:`default_precision`), the GPT preset a gigatok checkpoint records when no GPT is
named, and the checks of the pairing of backbone and settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigatok_core.errors import GigatokError
from gigatok_core.probe.api import (
    gpt_to_probe,
    probe_gpt,
    probe_gpt_files,
    probe_tokenizer,
    probe_tokenizer_files,
)
from gigatok_core.probe.features import TOKENIZER_MODES
from gigatok_core.probe.run import EpochCallback, ProbeConfig, ProbeResult
from gigatok_core.utils.progress import ProgressFn

BACKBONES = ("gpt", "tokenizer")


def default_precision(backbone: str, device: str | None) -> str:
    """The official precision of a probe: fp16 autocast for a GPT on CUDA (official
    ``autoregressive/lin_probe/lin_probe.py``), fp32 for a tokenizer (official
    ``tokenizer/lin_probe/lin_probe.py``) and on CPU."""
    from gigatok_core.dist import resolve_device

    return "fp16" if backbone == "gpt" and resolve_device(device).type == "cuda" else "fp32"


def probe_config(
    settings: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] | None = None,
) -> ProbeConfig:
    """The recipe: ``settings`` (:class:`ProbeConfig` fields), then a YAML file, then ``key=value``
    items (later wins; unknown keys and bad values are refused by name)."""
    from gigatok_core.config import build_config

    overrides = list(overrides or [])
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise GigatokError(
            f"unexpected argument {bad[0]!r}", hint="probe settings are written key=value, e.g. momentum=0.95"
        )
    base = {k: str(v) if isinstance(v, Path) else v for k, v in (settings or {}).items()}  # cache_dir
    return build_config(ProbeConfig, base, config_file, overrides)


@dataclass(frozen=True)
class ProbeRequest:
    """What to probe, on which splits, into which RUN_DIR, with which recipe (checked when made)."""

    backbone: str  # "gpt" or "tokenizer"
    train_split: Path  # ImageFolder tree the head trains on
    val_split: Path  # ImageFolder tree with the same class folders
    output: Path  # RUN_DIR
    config: ProbeConfig
    gpt: str | None = None  # GPT probe: preset or release (gpt-b@xl-xxl); None: the checkpoint's
    gpt_checkpoint: str | Path | None = None  # GPT weights file, or a `gigatok train gpt` RUN_DIR
    tokenizer: str | None = None  # tokenizer probe: the preset; GPT probe: its pairing (None: the GPT's)
    tokenizer_checkpoint: str | Path | None = None  # the tokenizer's weights (None: the preset's)
    mode: str = "encoder"  # tokenizer probe: encoder, fix_dim or decoder features
    device: str | None = None  # None/"auto": this rank's CUDA device, else CPU
    overwrite: bool = False  # restart a RUN_DIR holding another probe

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise GigatokError(f"backbone must be gpt or tokenizer, not {self.backbone!r}")
        if self.backbone == "gpt":
            # a gigatok run names its own GPT; resolved now so the run folder records it
            object.__setattr__(self, "gpt", gpt_to_probe(self.gpt, self.gpt_checkpoint))
            return
        if not self.tokenizer:
            raise GigatokError("a tokenizer probe needs the tokenizer preset", hint="e.g. --tokenizer s-s")
        if self.mode not in TOKENIZER_MODES:
            raise GigatokError(
                f"mode must be one of {', '.join(TOKENIZER_MODES)}, not {self.mode!r}",
                hint="--fix-dim (fix_dim) or --from-decoder (decoder); the default is encoder",
            )
        if self.config.layer is not None:
            raise GigatokError(
                "layer applies to GPT probes only", hint="use --fix-dim / --from-decoder instead"
            )

    @classmethod
    def build(
        cls,
        backbone: str,
        train_split: str | Path,
        val_split: str | Path,
        output: str | Path,
        *,
        settings: Mapping[str, Any] | None = None,
        config_file: str | Path | None = None,
        overrides: Sequence[str] | None = None,
        device: str | None = None,
        **fields: Any,
    ) -> ProbeRequest:
        """A request whose recipe is ``settings`` (ProbeConfig fields; a None ``precision``: the
        official one, :func:`default_precision`), then ``config_file``, then ``overrides``.
        ``fields``: the other request fields (gpt, tokenizer, checkpoints, mode, overwrite)."""
        settings = dict(settings or {})
        if settings.get("precision") is None:
            settings["precision"] = default_precision(backbone, device)
        config = probe_config(settings, config_file, overrides)
        return cls(
            backbone, Path(train_split), Path(val_split), Path(output), config, device=device, **fields
        )

    @property
    def title(self) -> str:
        """What is probed, in words (the title of the CLI's result table)."""
        if self.backbone == "gpt":
            return f"linear probe: {self.gpt}"
        return f"linear probe: tokenizer {self.tokenizer} ({self.mode})"

    def _backbone_args(self) -> tuple[str, dict[str, Any]]:
        """The backbone's name and weights, as :func:`probe_gpt` / :func:`probe_tokenizer` take them."""
        if self.backbone == "gpt":
            weights = {
                "gpt_checkpoint": self.gpt_checkpoint,
                "tokenizer_checkpoint": self.tokenizer_checkpoint,
            }
            return self.gpt, {"tokenizer": self.tokenizer, **weights}  # type: ignore[return-value]
        return self.tokenizer, {"checkpoint": self.tokenizer_checkpoint}  # type: ignore[return-value]

    def required_files(self) -> list[Path]:
        """Check the splits and fetch every weights file the run reads (none for local weights)."""
        files = probe_gpt_files if self.backbone == "gpt" else probe_tokenizer_files
        name, weights = self._backbone_args()
        return files(name, self.train_split, self.val_split, subset=self.config.subset, **weights)

    def run(
        self, *, on_epoch: EpochCallback | None = None, on_progress: ProgressFn | None = None
    ) -> ProbeResult | None:
        """Probe (resuming RUN_DIR's run); the result on rank 0, None on the other ranks."""
        probe = probe_gpt if self.backbone == "gpt" else probe_tokenizer
        name, weights = self._backbone_args()
        if self.backbone == "tokenizer":
            weights["mode"] = self.mode
        return probe(
            name,
            self.train_split,
            self.val_split,
            self.output,
            config=self.config,
            device=self.device,
            overwrite=self.overwrite,
            on_epoch=on_epoch,
            on_progress=on_progress,
            **weights,
        )
