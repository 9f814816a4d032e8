"""Options shared by several commands, declared once (type, names, help, completion).

Each is an ``Annotated`` type: a command declares ``precision: PrecisionOpt = "fp32"`` and keeps
its own default. Value sets come from the library (:mod:`gigatok_core.choices`,
:mod:`gigatok_core.registry`), never from lists written here; ``--help`` lists the registry names
as DiT's ``choices=list(DiT_models)`` does, and :data:`CHOICES` feeds the static completion
scripts (``gigatok_cli/completion.py``). Nothing here imports torch.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gigatok_core import registry
from gigatok_core.choices import DEVICE_CHOICES, PRECISION_NAMES, RNG_MODES, SAMPLERS, SCHEDULES

F = TypeVar("F", bound=Callable[..., Any])


def option_group(
    param: str, options: Mapping[str, tuple[Any, Any]], build: Callable[[dict[str, Any]], Any] = dict
) -> Callable[[F], F]:
    """Declare a group of options once for several commands: the keyword-only options ``options``
    (parameter name -> (``Annotated`` type, default)) take the place of the command's parameter
    ``param``, which receives ``build(values)`` (by default the dict of their values).

    Typer has no option groups shared between commands, so this rewrites the signature Typer reads
    (``__signature__``, the documented :mod:`inspect` hook, and ``__annotations__``, which Typer
    reads with ``typing.get_type_hints``). The launcher options, the training run settings and the
    probe recipe are such groups.
    """
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
        for name, (ann, default) in options.items()
    ]

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        params = [q for p in sig.parameters.values() for q in (extra if p.name == param else [p])]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name, default) for name, (_, default) in options.items()}
            return fn(*args, **{param: build(values)}, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": sig.return_annotation}
        return wrapper  # type: ignore[return-value]

    return decorate


# ---------------------------------------------------------------------------------------------
# Value sets (the library's) and their completion
# ---------------------------------------------------------------------------------------------
def gpt_choices() -> list[str]:
    """What ``--gpt`` accepts: GPT presets and released pairs (``gpt-b@xl-xxl``)."""
    return registry.gpt_names() + registry.release_names()


def download_choices() -> list[str]:
    """What ``gigatok download`` and ``--preset`` accept: presets, releases and weight files."""
    return registry.tokenizer_names() + registry.release_names() + registry.weights_names()


# long option name -> its value set; completion.py and the autocompletion functions read this
CHOICES: dict[str, Callable[[], list[str]]] = {
    "--tokenizer": registry.tokenizer_names,
    "--gpt": gpt_choices,
    "--preset": download_choices,
    "--precision": lambda: list(PRECISION_NAMES),
    "--device": lambda: list(DEVICE_CHOICES),
    "--cfg-schedule": lambda: list(SCHEDULES),
    "--rng": lambda: list(RNG_MODES),
    "--format": lambda: ["safetensors", "hub"],  # gigatok train export
    "--sampler": lambda: list(SAMPLERS),
}


# command path -> the value set of its positional arguments (``gigatok download NAME``)
ARGUMENT_CHOICES: dict[str, Callable[[], list[str]]] = {
    "download": registry.downloadable_names,
    "cache verify": registry.downloadable_names,
    "cache clear": registry.downloadable_names,
}


def completer(values: str | Callable[[], list[str]]) -> Callable[[str], list[str]]:
    """Shell completion (``--install-completion``) for a value set: an option's (its long name in
    :data:`CHOICES`) or a listing such as :func:`gigatok_core.registry.gpt_names`."""
    names = CHOICES[values] if isinstance(values, str) else values

    def complete(incomplete: str) -> list[str]:
        return [n for n in names() if n.startswith(incomplete)]

    return complete


def hub_weights(value: Any) -> Any:
    """Callback of every option that takes weights: a Hugging Face Hub reference
    (``hf://OWNER/REPO[@REVISION]``, ``hf://OWNER/REPO/FILE``) becomes the verified file in the shared
    Hugging Face cache (:func:`gigatok_core.hub.resolve_hub_ref`); anything else passes unchanged."""
    from gigatok_core.config.source import is_hub_ref
    from gigatok_core.errors import GigatokError
    from gigatok_core.hub.hf import resolve_hub_ref

    if value is None or not is_hub_ref(value):
        return value
    try:
        path = resolve_hub_ref(value)
    except GigatokError as err:
        raise typer.BadParameter(err.message + (f"\nhint: {err.hint}" if err.hint else "")) from None
    return path if isinstance(value, Path) else str(path)


HUB_HELP = " Also hf://OWNER/REPO[@REVISION] or hf://OWNER/REPO/FILE (Hugging Face Hub)."


def _listed(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(names)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
TokenizerOpt = Annotated[
    str,
    typer.Option(
        "--tokenizer",
        "-t",
        help=f"Tokenizer preset: {_listed(registry.tokenizer_names())}.",
        autocompletion=completer("--tokenizer"),
        envvar="GIGATOK_TOKENIZER",
    ),
]
CheckpointTokenizerOpt = Annotated[
    str | None,
    typer.Option(
        "--tokenizer",
        "-t",
        help=f"Tokenizer preset: {_listed(registry.tokenizer_names())}; "
        "default: the one a gigatok --checkpoint (run folder, exported file) names, else s-s.",
        autocompletion=completer("--tokenizer"),
        envvar="GIGATOK_TOKENIZER",
        show_default=False,
    ),
]
PairedTokenizerOpt = Annotated[
    str | None,
    typer.Option(
        "--tokenizer",
        "-t",
        help="Tokenizer preset; default: the one the GPT was trained with.",
        autocompletion=completer("--tokenizer"),
        show_default=False,
    ),
]
RunGptOpt = Annotated[
    str | None,
    typer.Option(
        "--gpt",
        "-g",
        help=f"GPT preset ({_listed(registry.gpt_names())}) or released pair "
        f"({_listed(registry.release_names())}); default: the one a gigatok --gpt-checkpoint names, "
        "else gpt-b.",
        autocompletion=completer("--gpt"),
        envvar="GIGATOK_GPT",
        show_default=False,
    ),
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint", help="Tokenizer weights instead of the preset's." + HUB_HELP, callback=hub_weights
    ),
]
GptCheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--gpt-checkpoint",
        help="GPT weights instead of the released ones: a file, or a `gigatok train gpt` RUN_DIR "
        "(newest checkpoint, EMA preferred; it names its preset, tokenizer and classes)." + HUB_HELP,
        callback=hub_weights,
    ),
]
TokenizerCheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--tokenizer-checkpoint",
        help="Tokenizer weights instead of the preset's: a file, or a `gigatok train tokenizer` RUN_DIR "
        "(default: the checkpoint a gigatok GPT run recorded)." + HUB_HELP,
        callback=hub_weights,
    ),
]

# ---------------------------------------------------------------------------------------------
# Where and how to run
# ---------------------------------------------------------------------------------------------
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help=f"{_listed(PRECISION_NAMES)} (fp16 needs a GPU; bf16 a GPU or a CPU with AVX512-BF16/AMX).",
        autocompletion=completer("--precision"),
    ),
]
AutoPrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help=f"{_listed(PRECISION_NAMES)}; default bf16 on CUDA, fp32 on CPU.",
        autocompletion=completer("--precision"),
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help="auto (this rank's GPU if there is one, else CPU), cpu, cuda or cuda:N.",
        autocompletion=completer("--device"),
    ),
]
ForwardBatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        help="DataLoader worker processes decoding images (default: min(4, CPU cores - 1)).",
        show_default=False,
    ),
]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Run seed; each image is seeded from (seed, class, index).")
]
RngOpt = Annotated[
    str,
    typer.Option(
        "--rng",
        help="per-sample (batch/rank independent) or official "
        "(one torch.multinomial stream, as the official sampler).",
        autocompletion=completer("--rng"),
    ),
]
SamplerOpt = Annotated[
    str,
    typer.Option(
        "--sampler",
        help="standard (one token per GPT forward pass) or sjd (speculative Jacobi decoding: several "
        "tokens per pass, the same distribution, other images for a seed; needs --rng per-sample).",
        autocompletion=completer("--sampler"),
    ),
]
SjdWindowOpt = Annotated[
    int,
    typer.Option("--sjd-window", min=1, help="--sampler sjd: draft tokens per forward pass."),
]

# ---------------------------------------------------------------------------------------------
# Classifier-free guidance (docs/ar.md#cfg-schedules)
# ---------------------------------------------------------------------------------------------
CfgScaleOpt = Annotated[
    float | None,
    typer.Option(
        "--cfg-scale",
        help="Classifier-free guidance scale (<= 1: off). eval gfid: default 1.75; with --search the "
        "start, default the official empirical start for the GPT and schedule.",
    ),
]
CfgScheduleOpt = Annotated[
    str,
    typer.Option(
        "--cfg-schedule",
        help=f"CFG schedule: {_listed(SCHEDULES)}.",
        autocompletion=completer("--cfg-schedule"),
    ),
]
CfgStartOpt = Annotated[
    float | None,
    typer.Option(
        "--cfg-start-ratio",
        help="step/sigmoid start (default 0.18); rectangular window start (default 0.05).",
        show_default=False,
    ),
]
CfgEndOpt = Annotated[
    float | None,
    typer.Option("--cfg-end-ratio", help="Rectangular window end (default 1.0).", show_default=False),
]

# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Also write the numbers to this JSON file.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]


# ---------------------------------------------------------------------------------------------
# Frozen networks (one option and one environment variable each) and evaluation
# ---------------------------------------------------------------------------------------------
def _frozen(flag: str, envvar: str, what: str) -> Any:
    return typer.Option(
        flag, envvar=envvar, help=f"Local {what} weights file (default: the download cache; env {envvar})."
    )


VggWeightsOpt = Annotated[
    Path | None, _frozen("--vgg-weights", "GIGATOK_VGG_WEIGHTS", "VGG16 (LPIPS, vgg16-397923af.pth)")
]
TeacherWeightsOpt = Annotated[
    Path | None, _frozen("--teacher-weights", "GIGATOK_TEACHER_WEIGHTS", "DINOv2 ViT-B/14 teacher")
]
DinoWeightsOpt = Annotated[
    Path | None, _frozen("--dino-weights", "GIGATOK_DINO_WEIGHTS", "DINO ViT-S/16 (dinodisc)")
]
InceptionOpt = Annotated[
    Path | None,
    typer.Option(
        "--inception-weights",
        help="FID Inception weights (pt_inception-2015-12-05-6726825d.pth); default: the cache.",
        envvar="GIGATOK_INCEPTION_WEIGHTS",
    ),
]
BatchOpt = Annotated[
    int, typer.Option("--batch-size", help="Images per Inception batch (results do not depend on it).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Use a reference made for another protocol anyway.")]
PROpt = Annotated[
    bool,
    typer.Option(
        "--precision-recall/--no-precision-recall",
        help="Compute improved precision/recall (needs reference features).",
    ),
]
ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--protocol", help="Check that REFERENCE was made for this protocol: gfid-adm or rfid-imagenet-val."
    ),
]
