"""Training configs: a model config, its recipe and this run's settings, in one nested object.

``TokenizerTrainConfig.from_name("s-s", overrides=["recipe.lr=1e-3", "run.max_steps=5"])`` takes
the preset's architecture and recipe, then a YAML file, then ``key=value`` overrides (one grammar,
:func:`gigatok_core.config.build_config`). ``RunConfig`` fields left ``None`` fall back to the
recipe; the resolved values are the properties of the train config (``total_steps``, ``lr`` ...).

``from_options`` is the training commands' grammar in one call: the same layers, then run settings
given one by one (``max_steps=5, lr=None``: None is "not given"), which win over the overrides as the
command-line options ``--max-steps`` ... do::

    cfg = GPTTrainConfig.from_options("gpt-b", overrides=["recipe.warmup=0"], max_steps=100, lr=None)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from gigatok_core.config.build import (
    build_config,
    check,
    check_shadowed,
    load_yaml,
    merge_mappings,
    parse_dotlist,
)
from gigatok_core.config.model import GPTConfig, TokenizerConfig
from gigatok_core.config.preset_files import declared
from gigatok_core.config.recipe import PRECISIONS, GPTRecipe, TokenizerRecipe, epochs_to_steps
from gigatok_core.errors import GigatokError

STRATEGIES = ("ddp", "fsdp")
T = TypeVar("T", bound="_TrainConfig")


@dataclass(frozen=True)
class RunConfig:
    """How this run executes. ``None`` means "the recipe's value"."""

    max_steps: int | None = None  # None: the recipe's epochs converted to steps
    batch_size: int | None = None  # global batch (all ranks, all accumulation steps); None: recipe's
    grad_accum: int = 1
    lr: float | None = None  # None: the recipe's lr
    seed: int = 0
    save_every: int = 5000  # steps between checkpoints (the official cadence)
    keep: int | None = None  # checkpoints kept (newest); None keeps all
    log_every: int = 100
    sample_every: int | None = None  # steps between sample/reconstruction grids; None: never
    val_every: int | None = None  # steps between validation passes; None: never
    precision: str | None = None  # fp32 | bf16 | fp16; None: the recipe's
    strategy: str | None = None  # ddp | fsdp; None: fsdp when the recipe says so
    compile: bool | None = None  # None: the recipe's (GPT: on CUDA under DDP; tokenizer: off)
    activation_checkpointing: bool = False
    ema: bool | None = None  # None: the recipe's
    on_nan: str = "stop"  # stop | skip (skip the update of a step whose loss is not finite)
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        check(self.max_steps is None or self.max_steps > 0, "run.max_steps must be positive")
        check(self.batch_size is None or self.batch_size > 0, "run.batch_size must be positive")
        check(self.grad_accum > 0, "run.grad_accum must be positive")
        check(
            self.batch_size is None or self.batch_size % self.grad_accum == 0,
            f"run.batch_size {self.batch_size} must be a multiple of run.grad_accum {self.grad_accum}",
        )
        check(self.lr is None or self.lr > 0, "run.lr must be positive")
        check(self.seed >= 0, "run.seed must be >= 0")
        check(self.save_every > 0 and self.log_every > 0, "run.save_every and run.log_every must be positive")
        check(self.keep is None or self.keep > 0, "run.keep must be positive (or null to keep all)")
        for name in ("sample_every", "val_every"):
            value = getattr(self, name)
            check(value is None or value > 0, f"run.{name} must be positive (or null for never)")
        check(
            self.precision is None or self.precision in PRECISIONS,
            f"run.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
        )
        check(
            self.strategy is None or self.strategy in STRATEGIES,
            f"run.strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}",
        )
        check(self.on_nan in ("stop", "skip"), f"run.on_nan must be 'stop' or 'skip', got {self.on_nan!r}")
        check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"run.device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )


#: What each run setting means (the --help of ``gigatok train``'s run options)
RUN_HELP = {
    "max_steps": "Optimizer steps.",
    "batch_size": "Global batch (all processes and accumulation).",
    "grad_accum": "Micro-batches per step.",
    "lr": "Base learning rate.",
    "seed": "Random seed.",
    "save_every": "Steps between checkpoints.",
    "keep": "Checkpoints kept (newest).",
    "log_every": "Steps between log records.",
    "val_every": "Steps between validation passes.",
    "sample_every": "Steps between sample grids (RUN_DIR/samples).",
    "device": "auto, cpu, cuda or cuda:N.",
    "precision": f"{', '.join(PRECISIONS)}.",
    "strategy": f"{' or '.join(STRATEGIES)}.",
    "ema": "Keep an EMA of the weights.",
    "compile": "torch.compile the model.",
    "on_nan": "stop or skip a non-finite step.",
}


def run_dotlist(settings: Mapping[str, Any]) -> list[str]:
    """``run.KEY=VALUE`` for each :class:`RunConfig` setting given (None: not given), in the override
    grammar, so that an earlier ``run.KEY=...`` override it replaces is still checked."""
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise GigatokError(
            f"unknown run setting{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            hint=f"run settings: {', '.join(sorted(known))}",
        )
    return [
        f"run.{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in settings.items()
        if value is not None
    ]


class _TrainConfig:
    """What the two training configs share: their constructors (``KIND`` names the presets) and the
    run's effective values (the run setting when given, else the recipe's)."""

    KIND: ClassVar[str]

    model: TokenizerConfig | GPTConfig
    recipe: TokenizerRecipe | GPTRecipe
    run: RunConfig
    preset: str | None

    @classmethod
    def from_options(
        cls: type[T],
        preset: str,
        *,
        config_file: str | Path | None = None,
        overrides: Sequence[str] = (),
        **run: Any,
    ) -> T:
        """The preset -> ``config_file`` -> ``overrides`` (dotlist) -> ``run`` settings given one by
        one (:class:`RunConfig` names; None: not given), as ``gigatok train gpt|tokenizer`` take them
        (its ``--max-steps``, ``--lr`` ... win over a ``run.KEY=`` override)."""
        dotlist = [*overrides, *run_dotlist(run)]
        return cls.from_name(preset, config_file=config_file, overrides=dotlist)

    @property
    def batch_size(self) -> int:
        return self.run.batch_size or self.recipe.global_batch_size

    @property
    def total_steps(self) -> int:
        """Schedule length T: run.max_steps, else the recipe's epochs at the effective batch."""
        return self.run.max_steps or epochs_to_steps(self.recipe.epochs, self.batch_size)

    @property
    def lr(self) -> float:
        return self.run.lr if self.run.lr is not None else self.recipe.lr

    @property
    def precision(self) -> str:
        return self.run.precision or self.recipe.precision

    @property
    def strategy(self) -> str:
        return self.run.strategy or ("fsdp" if self.recipe.fsdp else "ddp")

    @property
    def compile(self) -> bool | None:
        """``run.compile`` when given; else None ("where the recipe compiles and it helps", decided
        on the device by the engine) for a recipe that compiles, False for one that does not."""
        if self.run.compile is not None:
            return self.run.compile
        return None if getattr(self.recipe, "compile", False) else False

    @property
    def ema(self) -> bool:
        return self.recipe.ema if self.run.ema is None else self.run.ema

    @classmethod
    def from_name(
        cls: type[T],
        preset: str,
        *,
        config_file: str | Path | None = None,
        overrides: list[str] | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> T:
        """Preset -> ``config_file`` -> ``overrides`` (dotlist) -> ``kwargs`` (nested mappings)."""
        entry = declared(cls.KIND, preset)
        base = {"preset": preset, "model": entry["config"], "recipe": entry["recipe"]}
        if isinstance(overrides, (list, tuple)):  # e.g. run.max_steps=abc before the --max-steps option's
            check_shadowed(
                overrides,
                lambda kept: build_config(
                    cls,
                    base,
                    config_file=config_file,
                    overrides=merge_mappings(parse_dotlist(kept), kwargs or {}),
                ),
            )
        layer = parse_dotlist(overrides) if isinstance(overrides, (list, tuple)) else dict(overrides or {})
        if kwargs:
            layer = merge_mappings(layer, kwargs)
        return build_config(cls, base, config_file=config_file, overrides=layer)

    @classmethod
    def from_file(cls: type[T], path: str | Path, **kwargs: Any) -> T:
        """A YAML train config; a top-level ``preset:`` key starts from that preset."""
        preset = load_yaml(path).get("preset")
        if preset is not None:
            return cls.from_name(str(preset), config_file=path, overrides=kwargs or None)
        return build_config(cls, config_file=path, overrides=kwargs or None)

    def to_dict(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The resolved config as a plain dict with the run's ``data`` settings beside it (the run's
        config.yaml, its checkpoints' meta)."""
        return {
            "preset": self.preset,
            "model": dataclasses.asdict(self.model),
            "recipe": dataclasses.asdict(self.recipe),
            "run": dataclasses.asdict(self.run),
            "data": dict(data),
        }


@dataclass(frozen=True)
class TokenizerTrainConfig(_TrainConfig):
    """Everything ``gigatok train tokenizer`` needs (docs/recipes.md#tokenizer)."""

    KIND: ClassVar[str] = "tokenizer"

    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    recipe: TokenizerRecipe = field(default_factory=TokenizerRecipe)
    run: RunConfig = field(default_factory=RunConfig)
    preset: str | None = None  # the tokenizer preset this config started from


@dataclass(frozen=True)
class GPTTrainConfig(_TrainConfig):
    """Everything ``gigatok train gpt`` needs (docs/recipes.md#gpt)."""

    KIND: ClassVar[str] = "gpt"

    model: GPTConfig = field(default_factory=GPTConfig)
    recipe: GPTRecipe = field(default_factory=GPTRecipe)
    run: RunConfig = field(default_factory=RunConfig)
    preset: str | None = None  # the GPT preset this config started from
