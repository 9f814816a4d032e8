"""Typed requests of the commands that are not training: one frozen dataclass per command.

A request holds every setting of one run, as the CLI or Python code gives it (``None`` where the
library resolves the value: the preset a checkpoint names, the tokenizer a GPT pairs with). It is
built once, checked in ``__post_init__`` (a :class:`~gigatok_core.errors.SettingError` names the
setting, ``num_per_class must be at least 1``; the CLI phrases the same error with its flag through
:attr:`Request.FLAGS`), handed to the command's function (``sample_images(request)``,
``reconstruct(request)``, ``evaluation.commands.rfid(request)`` ...), and answers
:meth:`Request.required_files`: what the run reads, so that a launcher's parent process fetches
each file once before its workers start (:func:`gigatok_core.tasks.fetch.fetch_required`).

The files a run writes record the resolved settings (``sample.json``, ``reconstruct.json``, the
``--json`` of ``eval``), with the keys they had before these requests existed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gigatok_core.choices import PRECISION_NAMES, RNG_MODES, SAMPLERS, SCHEDULES
from gigatok_core.errors import SettingError, fill_settings, literal

PathLike = str | Path

# Auxiliary files of the registry (``presets/weights.yaml``) that the evaluations read
VGG_WEIGHTS = "vgg16-397923af.pth"  # LPIPS backbone (gigatok_core.tasks.image_metrics)
ADM_REFERENCE = "VIRTUAL_imagenet256_labeled.npz"  # gFID reference batch (evaluation.generation)
INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"  # FID Inception (evaluation.inception)
DEFAULT_TOKENIZER = "s-s"  # reconstruct's tokenizer when neither a preset nor a gigatok checkpoint names one
DEFAULT_SJD_WINDOW = 16  # draft tokens per pass of speculative Jacobi decoding (gigatok_core.ar.sjd)
# gFID defaults of the paper's evaluation (docs/evaluation.md#generation): CFG 1.75 with the step
# schedule, 50 images per class (50k samples over the 1000 ImageNet classes)
DEFAULT_CFG_SCALE = 1.75
DEFAULT_CFG_SCHEDULE = "step"
DEFAULT_NUM_PER_CLASS = 50


# ---------------------------------------------------------------------------------------------
# What a run reads (answers of ``required_files``; fetched by gigatok_core.tasks.fetch)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    """The device (and precision) must work here: checked before any worker starts."""

    device: str | None
    precision: str | None = None


@dataclass(frozen=True)
class TokenizerWeights:
    """A tokenizer preset's released weights; none to fetch for a local ``checkpoint`` (file, run
    or export folder, ``hf://``: checked to exist) or a preset with random weights."""

    name: str
    checkpoint: PathLike | None = None
    setting: str = "checkpoint"


@dataclass(frozen=True)
class GPTWeights:
    """A GPT's released weights and its tokenizer's, paired as :func:`gigatok_core.ar.load.load_gpt`
    pairs them; ``classes`` (if given) must name classes of that GPT."""

    gpt: str | None
    tokenizer: str | None
    gpt_checkpoint: PathLike | None = None
    tokenizer_checkpoint: PathLike | None = None
    classes: str | Sequence[int | str] | None = None


@dataclass(frozen=True)
class AuxFile:
    """An auxiliary file of the registry (``name``), or the ``local`` file that replaces it."""

    name: str
    local: PathLike | None
    setting: str


@dataclass(frozen=True)
class LocalFile:
    """A file given by the user that must exist (``None``: not given)."""

    path: PathLike | None
    setting: str


@dataclass(frozen=True)
class Folder:
    """A folder given by the user that must exist."""

    path: PathLike
    setting: str
    hint: str


Need = Device | TokenizerWeights | GPTWeights | AuxFile | LocalFile | Folder


# ---------------------------------------------------------------------------------------------
# What each setting means
# ---------------------------------------------------------------------------------------------
#: The meaning of the settings that several requests share, written once; a request's ``HELP``
#: adds its own settings and replaces a shared text where its setting means more. A text names
#: other settings in braces (``{checkpoint}``): :meth:`Request.help` fills in Python's names or the
#: CLI's flags. These are the ``--help`` texts of the CLI's options.
SETTING_HELP: dict[str, str] = {
    "gpt": "GPT preset or released pair (GPT@tokenizer); default: the one a gigatok {gpt_checkpoint} "
    "names, else gpt-b.",
    "tokenizer": "Tokenizer preset.",
    "checkpoint": "Tokenizer weights instead of the preset's: a file, a training run folder or an "
    "exported file.",
    "gpt_checkpoint": "GPT weights instead of the released ones: a file, or a `gigatok train gpt` "
    "RUN_DIR (newest checkpoint, EMA preferred; it names its preset, tokenizer and classes).",
    "tokenizer_checkpoint": "Tokenizer weights instead of the preset's: a file, or a `gigatok train "
    "tokenizer` RUN_DIR (default: the checkpoint a gigatok GPT run recorded).",
    "device": "auto (this rank's GPU if there is one, else CPU), cpu, cuda or cuda:N.",
    "precision": f"{', '.join(PRECISION_NAMES)} (fp16 needs a GPU; bf16 a GPU or a CPU with "
    "AVX512-BF16/AMX).",
    "batch_size": "Images per forward pass.",
    "workers": "DataLoader worker processes decoding images (default: min(4, CPU cores - 1)).",
    "seed": "Run seed; each image is seeded from (seed, class, index).",
    "rng": "per-sample (batch/rank independent) or official (one torch.multinomial stream, as the "
    "official sampler).",
    "sampler": "standard (one token per GPT forward pass) or sjd (speculative Jacobi decoding: several "
    "tokens per pass, the same distribution, other images for a seed; needs {rng} per-sample).",
    "sjd_window": "{sampler} sjd: draft tokens per forward pass.",
    "cfg_scale": "Classifier-free guidance scale (<= 1: off).",
    "cfg_schedule": f"CFG schedule: {', '.join(SCHEDULES)}.",
    "cfg_start_ratio": "step/sigmoid start (default 0.18); rectangular window start (default 0.05).",
    "cfg_end_ratio": "Rectangular window end (default 1.0).",
    "vgg_weights": "Local VGG16 weights for LPIPS (vgg16-397923af.pth); default: the download cache.",
    "teacher_weights": "Local DINOv2 ViT-B/14 teacher weights; default: the download cache.",
    "dino_weights": "Local DINO ViT-S/16 weights (dinodisc); default: the download cache.",
    "inception_weights": "FID Inception weights (pt_inception-2015-12-05-6726825d.pth); default: the cache.",
    "force": "Use a reference made for another protocol anyway.",
    "with_precision_recall": "Compute improved precision/recall (needs reference features).",
    "json_path": "Also write the numbers to this JSON file.",
    "overwrite": "Replace existing output files.",
}
AUTO_PRECISION = f"{', '.join(PRECISION_NAMES)}; default bf16 on CUDA, fp32 on CPU."


# ---------------------------------------------------------------------------------------------
# The base
# ---------------------------------------------------------------------------------------------
class Request:
    """What every request shares: settings named for errors, the files it reads, its settings dict."""

    #: the command line's name of each setting whose flag is not ``--`` + the name with dashes (an
    #: upper-case name is a positional argument)
    FLAGS: ClassVar[dict[str, str]] = {}
    #: what this request's own settings mean (and shared ones that mean more here; a subclass adds to
    #: its base's): see SETTING_HELP
    HELP: ClassVar[dict[str, str]] = {}
    #: the smallest value of each count setting (``None`` is left to the library's default)
    AT_LEAST: ClassVar[dict[str, int]] = {"batch_size": 1}

    def __post_init__(self) -> None:
        for name, low in self.AT_LEAST.items():
            self.check_at_least(name, low)

    @classmethod
    def flags(cls) -> dict[str, str]:
        """setting -> CLI flag, for every setting of the request."""
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        return {n: cls.FLAGS.get(n, "--" + n.replace("_", "-")) for n in names}

    @classmethod
    def help(cls, names: dict[str, str] | None = None) -> dict[str, str]:
        """setting -> what it means (:data:`SETTING_HELP`, then ``HELP``), other settings called by
        ``names`` (default: their Python names; the CLI passes :meth:`flags`)."""
        own = {
            k: v for c in reversed(cls.__mro__) for k, v in vars(c).get("HELP", {}).items()
        }  # a subclass's last
        texts = {n: own.get(n, SETTING_HELP.get(n, "")) for n in cls.flags()}
        return {n: fill_settings(t, texts, names) for n, t in texts.items()}

    def error(self, template: str, hint: str | None = None) -> SettingError:
        """A :class:`SettingError` naming settings in braces: ``self.error("{seed} must be >= 0")``."""
        return SettingError(template, flags=self.flags(), hint=hint)

    def check_at_least(self, name: str, low: int | float) -> None:
        value = getattr(self, name)
        if value is not None and value < low:
            raise self.error(f"{{{name}}} must be at least {low}, got {value}")

    def required_files(self) -> tuple[Need, ...]:
        """What the run reads: the device it runs on, weights, auxiliary files, input folders."""
        return ()

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values (paths as strings)."""

        def plain(v: Any) -> Any:
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, list | tuple):
                return [plain(x) for x in v]
            return v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def _check_sampler(req: Any) -> None:
    """The sampler settings shared by ``sample`` and ``eval gfid``."""
    if req.sampler not in SAMPLERS:
        raise req.error(
            f"unknown {{sampler}} {literal(repr(req.sampler))}", hint=f"use one of {', '.join(SAMPLERS)}"
        )


# ---------------------------------------------------------------------------------------------
# gigatok sample / gigatok reconstruct
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleRequest(Request):
    """``gigatok sample``: ``num_per_class`` images of each class into ``output`` (the settings'
    meanings: :meth:`Request.help`; guidance: :class:`gigatok_core.ar.CFGSchedule`)."""

    classes: str | Sequence[int | str]
    output: PathLike = Path("samples")
    gpt: str | None = None
    tokenizer: str | None = None
    num_per_class: int = 1
    cfg_scale: float = 4.0
    cfg_schedule: str = "constant"
    cfg_start_ratio: float | None = None
    cfg_end_ratio: float | None = None
    cfg_interval: int = -1
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    rng: str = "per-sample"
    sampler: str = "standard"
    sjd_window: int = DEFAULT_SJD_WINDOW
    precision: str = "fp32"
    batch_size: int = 8
    device: str | None = None
    gpt_checkpoint: PathLike | None = None
    tokenizer_checkpoint: PathLike | None = None
    grid: bool = False
    save_codes: bool = False
    overwrite: bool = False
    compile: bool = False

    HELP: ClassVar[dict[str, str]] = {
        "classes": "Comma-separated ImageNet class indices (0-999) or names, e.g. '22,388' or "
        "'giant panda,bald eagle'.",
        "output": "Folder for the PNGs.",
        "tokenizer": "Tokenizer preset; default: the one the GPT was trained with.",
        "num_per_class": "Images per class.",
        "cfg_interval": "Decode steps after this use the conditional logits only (-1: never).",
        "temperature": "Softmax temperature.",
        "top_k": "Keep the k most likely tokens (0: off).",
        "top_p": "Nucleus sampling mass (1.0: off).",
        "batch_size": "Images per generation batch.",
        "grid": "Also write grid.png, a labelled contact sheet.",
        "save_codes": "Also write codes.npz (codes (N,256), labels).",
        "overwrite": "Start over: first remove exactly the files the previous run in {output} recorded in "
        "its sample.json (default: resume or extend a run of the same settings, refuse any other run).",
        "compile": "torch.compile the GPT decode step (CUDA graphs on a GPU; the first batch compiles).",
    }
    AT_LEAST: ClassVar[dict[str, int]] = {"num_per_class": 1, "batch_size": 1, "sjd_window": 1}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rng not in RNG_MODES:
            raise self.error(
                f"unknown {{rng}} {literal(repr(self.rng))}", hint=f"use one of {', '.join(RNG_MODES)}"
            )
        _check_sampler(self)
        if self.sampler == "sjd" and self.rng != "per-sample":
            raise self.error(
                "{sampler} sjd draws from per-sample generators; {rng} official replays the official "
                "sampler's single torch.multinomial stream, which SJD does not use",
                hint="leave out {rng} (per-sample is the default), or use the standard sampler",
            )
        if not 0 <= self.seed < 2**63:
            raise self.error(f"{{seed}} must lie in 0 .. 2^63-1, got {self.seed}")

    def required_files(self) -> tuple[Need, ...]:
        return (
            Device(self.device, self.precision),
            GPTWeights(
                self.gpt, self.tokenizer, self.gpt_checkpoint, self.tokenizer_checkpoint, self.classes
            ),
        )


@dataclass(frozen=True)
class ReconstructRequest(Request):
    """``gigatok reconstruct``: every image of ``inputs`` (files, folders, globs) through a tokenizer."""

    inputs: Sequence[PathLike]
    output: PathLike = Path("reconstructions")
    tokenizer: str | None = None
    checkpoint: PathLike | None = None
    grid: bool = False
    save_codes: bool = False
    metrics: bool = False
    vgg_weights: PathLike | None = None
    device: str | None = None
    precision: str = "fp32"
    batch_size: int = 8
    strict: bool = False
    overwrite: bool = False

    FLAGS: ClassVar[dict[str, str]] = {"inputs": "INPUTS"}
    HELP: ClassVar[dict[str, str]] = {
        "inputs": "Image files, folders (recursive) or glob patterns.",
        "output": "Folder for the reconstructions.",
        "tokenizer": f"Tokenizer preset; default: the one a gigatok {{checkpoint}} (run folder, exported "
        f"file) names, else {DEFAULT_TOKENIZER}.",
        "grid": "Also write grid.png: original | reconstruction pairs.",
        "save_codes": "Also write codes.npz: code indices per image stem.",
        "metrics": "PSNR, SSIM, LPIPS per image and averaged (metrics.json).",
        "strict": "Fail on an unreadable image instead of skipping it.",
    }

    def __post_init__(self) -> None:
        if isinstance(self.inputs, str | Path):
            object.__setattr__(self, "inputs", [self.inputs])
        if not self.inputs:
            raise self.error("no {inputs} given", hint="pass image files, folders or glob patterns")
        super().__post_init__()

    def required_files(self) -> tuple[Need, ...]:
        name = self.tokenizer or DEFAULT_TOKENIZER  # with a checkpoint nothing is fetched for the name
        aux = (AuxFile(VGG_WEIGHTS, self.vgg_weights, "vgg_weights"),) if self.metrics else ()
        return (Device(self.device, self.precision), TokenizerWeights(name, self.checkpoint), *aux)


# ---------------------------------------------------------------------------------------------
# gigatok eval
# ---------------------------------------------------------------------------------------------
EVAL_FLAGS = {"with_precision_recall": "--precision-recall", "json_path": "--json"}
INCEPTION_BATCH = "Images per Inception batch (results do not depend on it)."


@dataclass(frozen=True)
class FIDRequest(Request):
    """``gigatok eval fid``: FID, sFID, IS, precision and recall of ``samples`` against ``reference``
    (each a folder of images, an image npz or a statistics npz)."""

    samples: PathLike
    reference: PathLike
    protocol: str | None = None
    force: bool = False
    inception_weights: PathLike | None = None
    batch_size: int = 64
    device: str | None = None
    with_precision_recall: bool = True
    json_path: PathLike | None = None
    overwrite: bool = False

    FLAGS: ClassVar[dict[str, str]] = {**EVAL_FLAGS, "samples": "SAMPLES", "reference": "REFERENCE"}
    HELP: ClassVar[dict[str, str]] = {
        "samples": "Folder of images, image npz (arr_0 uint8 NHWC) or statistics npz.",
        "reference": "Same kinds as {samples}; e.g. VIRTUAL_imagenet256_labeled.npz.",
        "protocol": "Check that {reference} was made for this protocol: gfid-adm or rfid-imagenet-val.",
        "batch_size": INCEPTION_BATCH,
    }


@dataclass(frozen=True)
class BuildRefRequest(Request):
    """``gigatok eval build-ref``: reference statistics of the images under ``data`` (ADM centre crop)."""

    data: PathLike
    output: PathLike
    image_size: int = 256
    protocol: str = "rfid-imagenet-val"
    with_images: bool = False
    inception_weights: PathLike | None = None
    batch_size: int = 64
    device: str | None = None
    overwrite: bool = False

    HELP: ClassVar[dict[str, str]] = {
        "data": "Folder of reference images (e.g. ImageNet val).",
        "output": "Statistics npz to write.",
        "image_size": "ADM centre-crop size.",
        "protocol": "What the reference is for: gfid-adm or rfid-imagenet-val.",
        "with_images": "Also store the crops as arr_0 (uint8), like the official val_imagenet.npz, so "
        "ADM's TensorFlow evaluator can read the file too (196 KB per 256px image: 9.8 GB for ImageNet val).",
        "batch_size": INCEPTION_BATCH,
    }
    AT_LEAST: ClassVar[dict[str, int]] = {"batch_size": 1, "image_size": 1}


@dataclass(frozen=True)
class RFIDRequest(Request):
    """``gigatok eval rfid``: reconstruction FID (and PSNR, SSIM, LPIPS, codebook usage) of a tokenizer
    on the images under ``data``; ``reference`` None: statistics built from ``data`` and cached."""

    tokenizer: str
    data: PathLike
    checkpoint: PathLike | None = None
    reference: PathLike | None = None
    save_samples: PathLike | None = None
    precision: str = "fp32"
    lpips: bool = True
    vgg_weights: PathLike | None = None
    force: bool = False
    inception_weights: PathLike | None = None
    batch_size: int = 32
    device: str | None = None
    with_precision_recall: bool = True
    json_path: PathLike | None = None
    overwrite: bool = False

    FLAGS: ClassVar[dict[str, str]] = EVAL_FLAGS
    HELP: ClassVar[dict[str, str]] = {
        "data": "Folder of validation images (ImageNet val for the paper's rFID).",
        "reference": "rfid-imagenet-val statistics; default: built from {data} in the same pass and cached.",
        "save_samples": "Also save reconstructions as PNGs here.",
        "lpips": "Compute LPIPS-VGG (needs vgg16 weights).",
        "batch_size": INCEPTION_BATCH,
    }

    def required_files(self) -> tuple[Need, ...]:
        aux = [AuxFile(INCEPTION_WEIGHTS, self.inception_weights, "inception_weights")]
        aux += [AuxFile(VGG_WEIGHTS, self.vgg_weights, "vgg_weights")] if self.lpips else []
        return (
            Device(self.device, self.precision),
            LocalFile(self.reference, "reference"),
            TokenizerWeights(self.tokenizer, self.checkpoint),
            *aux,
        )


@dataclass(frozen=True)
class GFIDRequest(Request):
    """``gigatok eval gfid``: class-balanced samples of a GPT into ``output``, scored against ADM's
    batch, or the official CFG search (``search``)."""

    output: PathLike
    gpt: str | None = None
    tokenizer: str | None = None
    gpt_checkpoint: PathLike | None = None
    tokenizer_checkpoint: PathLike | None = None
    reference: PathLike | None = None
    num_samples: int | None = None
    num_per_class: int | None = None
    num_classes: int = 1000
    cfg_scale: float | None = None
    cfg_schedule: str = DEFAULT_CFG_SCHEDULE
    cfg_start_ratio: float | None = None
    cfg_end_ratio: float | None = None
    search: bool = False
    window_grid: bool = False
    save_npz: PathLike | None = None
    seed: int = 0
    precision: str = "fp32"
    sample_batch_size: int = 32
    sampler: str = "standard"
    sjd_window: int = DEFAULT_SJD_WINDOW
    force: bool = False
    inception_weights: PathLike | None = None
    batch_size: int = 64
    device: str | None = None
    with_precision_recall: bool = True
    json_path: PathLike | None = None
    overwrite: bool = False
    regenerate: bool = False

    FLAGS: ClassVar[dict[str, str]] = EVAL_FLAGS
    HELP: ClassVar[dict[str, str]] = {
        "output": "Folder for the samples (existing PNGs of the same settings are reused: resumable).",
        "tokenizer": "Tokenizer preset; default: the one the GPT was trained with.",
        "reference": f"gfid-adm reference (default: {ADM_REFERENCE} from the cache).",
        "num_samples": "Samples in all, a multiple of the class count so every class gets as many "
        f"(default {DEFAULT_NUM_PER_CLASS * 1000}).",
        "num_per_class": f"Or: images per class ({DEFAULT_NUM_PER_CLASS} -> {DEFAULT_NUM_PER_CLASS}k).",
        "num_classes": "Only the first K classes (smoke runs; the paper's gFID uses all 1000).",
        "cfg_scale": f"Classifier-free guidance scale (<= 1: off); default {DEFAULT_CFG_SCALE}, with "
        "{search} the start, default the official empirical start for the GPT and schedule.",
        "search": "Official CFG search: step 0.25 from the start value until a local FID minimum; one "
        "sub-folder of {output} per scale, results appended to <output parent>/search_results/<output name>.csv.",
        "window_grid": "With {search} and {cfg_schedule} rectangular: search every official window "
        "(starts 0.10-0.80, ends 0.50-1.00, step 0.05), each from the previous window's best scale.",
        "save_npz": "Also write the ADM sample batch (arr_0 uint8 (N,256,256,3), index order).",
        "seed": "Run seed.",
        "sample_batch_size": "Images per generation batch.",
        "batch_size": INCEPTION_BATCH,
        "overwrite": "Replace existing {json_path} / {save_npz} files.",
        "regenerate": "Sample again, replacing the PNGs in {output} (default: reuse those of the same settings).",
    }
    AT_LEAST: ClassVar[dict[str, int]] = dict.fromkeys(
        ("num_classes", "sample_batch_size", "batch_size", "num_per_class", "sjd_window"), 1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_sampler(self)
        if self.window_grid and not (self.search and self.cfg_schedule == "rectangular"):
            raise self.error(
                "{window_grid} is a search over rectangular windows",
                hint="use it with {search} {cfg_schedule} rectangular",
            )
        self.images_per_class  # noqa: B018 - checks that the counts agree

    @property
    def images_per_class(self) -> int:
        """Images per class (gFID labels are class-balanced, so a total must split evenly)."""
        n, k, per = self.num_samples, self.num_classes, self.num_per_class
        if n is None:
            return DEFAULT_NUM_PER_CLASS if per is None else per
        if n < 1 or n % k:
            raise self.error(
                f"{{num_samples}} {n} does not split evenly over {k} classes",
                hint=f"use a multiple of {k} (e.g. {DEFAULT_NUM_PER_CLASS * k}), so the classes stay balanced",
            )
        if per is not None and per * k != n:
            raise self.error(
                f"{{num_samples}} {n} and {{num_per_class}} {per} disagree ({k} classes)",
                hint="pass only one of them",
            )
        return n // k

    def required_files(self) -> tuple[Need, ...]:
        return (
            Device(self.device, self.precision),
            GPTWeights(self.gpt, self.tokenizer, self.gpt_checkpoint, self.tokenizer_checkpoint),
            AuxFile(INCEPTION_WEIGHTS, self.inception_weights, "inception_weights"),
            AuxFile(ADM_REFERENCE, self.reference, "reference"),
        )


@dataclass(frozen=True)
class ValLossRequest(Request):
    """``gigatok eval val-loss``: a GPT's cross-entropy on the tokenizer's codes of ``data`` (an
    ImageFolder tree; ``class_subset``: folders for only the first classes, in order)."""

    data: PathLike
    gpt: str | None = None
    tokenizer: str | None = None
    gpt_checkpoint: PathLike | None = None
    tokenizer_checkpoint: PathLike | None = None
    precision: str | None = None
    batch_size: int = 32
    class_subset: bool = False
    device: str | None = None
    json_path: PathLike | None = None
    overwrite: bool = False

    FLAGS: ClassVar[dict[str, str]] = EVAL_FLAGS
    HELP: ClassVar[dict[str, str]] = {
        "data": "ImageFolder tree: one sub-folder per class, sorted names -> labels (ImageNet val).",
        "tokenizer": "Tokenizer preset; default: the one the GPT was trained with.",
        "precision": AUTO_PRECISION,
        "batch_size": "Images per batch (the reported mean is over batch means).",
        "class_subset": "{data} holds folders for only the first classes, in order (default: all the GPT's classes).",
    }

    def required_files(self) -> tuple[Need, ...]:
        return (
            Device(self.device),
            Folder(self.data, "data", "pass the ImageNet val ImageFolder tree"),
            GPTWeights(self.gpt, self.tokenizer, self.gpt_checkpoint, self.tokenizer_checkpoint),
        )


# ---------------------------------------------------------------------------------------------
# gigatok train extract-codes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtractCodesRequest(Request):
    """``gigatok train extract-codes``: encode ``data`` (an ImageFolder tree) into the codes folder
    ``output`` once, for GPT training; or convert the official layout (``import_official``)."""

    tokenizer: str
    output: PathLike
    data: PathLike | None = None
    checkpoint: PathLike | None = None
    ten_crop: bool = False
    crop_range: float = 1.1
    batch_size: int = 32
    shard_size: int = 10_000
    workers: int | None = None
    device: str | None = None
    precision: str | None = None
    overwrite: bool = False
    check_images: int = 4
    import_official: PathLike | None = None

    HELP: ClassVar[dict[str, str]] = {
        "output": "CODES_DIR to write (shards + manifest.json).",
        "data": "ImageFolder tree: one sub-folder per class (labels = sorted folder names).",
        "ten_crop": "Ten crops of the enlarged centre crop (else centre crop + flip).",
        "crop_range": "With {ten_crop}: centre-crop to int(size x this) first.",
        "shard_size": "Images per shard file.",
        "precision": AUTO_PRECISION,
        "check_images": "Images per shard decoded into check_codes.png (0: none).",
        "import_official": "Convert the official imagenet256_codes/ + imagenet256_labels/ folder instead "
        "of encoding ({data} then only names the classes).",
        "overwrite": "Replace the codes of another run in {output}.",
    }
    AT_LEAST: ClassVar[dict[str, int]] = {"batch_size": 1, "shard_size": 1, "workers": 0, "check_images": 0}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crop_range < 1.0:
            raise self.error(
                f"{{crop_range}} must be at least 1.0, got {self.crop_range}",
                hint="the official value is 1.1",
            )
        if self.import_official is None and self.data is None:
            raise self.error(
                "{data} is required",
                hint="pass the ImageFolder tree to encode (one sub-folder per class), "
                "or {import_official} DIR",
            )

    def required_files(self) -> tuple[Need, ...]:
        source, setting = (
            (self.import_official, "import_official") if self.import_official else (self.data, "data")
        )
        assert source is not None  # __post_init__
        return (
            Device(self.device, self.precision),
            Folder(source, setting, f"check the {{{setting}}} path"),
            TokenizerWeights(self.tokenizer, self.checkpoint),
        )


# ---------------------------------------------------------------------------------------------
# gigatok train gpt / tokenizer / export
# ---------------------------------------------------------------------------------------------
RESUME_MODES = ("auto", "never")


class TrainRequest(Request):
    """What the training requests share: the preset, the run folder ``output``, a YAML ``config``
    and ``overrides`` over the preset's, ``resume`` and ``overwrite``."""

    FLAGS: ClassVar[dict[str, str]] = {"overrides": "OVERRIDES"}
    AT_LEAST: ClassVar[dict[str, int]] = {}
    HELP: ClassVar[dict[str, str]] = {
        "output": "Run folder (checkpoints, logs, samples).",
        "config": "YAML file applied over the preset.",
        "resume": "auto (continue RUN_DIR) or never.",
        "overwrite": "Start over: remove the previous run's files in {output} first.",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.resume not in RESUME_MODES:  # type: ignore[attr-defined]
            raise self.error(f"{{resume}} must be auto or never, got {literal(repr(self.resume))}")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class GPTTrainRequest(TrainRequest):
    """``gigatok train gpt``: a GPT preset's recipe (then ``config``, then ``overrides``) on the
    pre-extracted ``codes``, into the run folder ``output``; the run settings given one by one
    (``--max-steps`` ...) are :meth:`gigatok_core.config.GPTTrainConfig.from_options`'s."""

    preset: str
    codes: PathLike
    output: PathLike
    overrides: Sequence[str] | None = None
    config: PathLike | None = None
    val_codes: PathLike | None = None
    val_fraction: float | None = None
    resume: str = "auto"
    overwrite: bool = False

    HELP: ClassVar[dict[str, str]] = {
        "preset": "GPT preset, e.g. gpt-b or gpt-tiny.",
        "codes": "CODES_DIR written by `gigatok train extract-codes`.",
        "overrides": "key=value settings, e.g. recipe.warmup=0 run.ema=true.",
        "val_codes": "Held-out CODES_DIR for the validation loss.",
        "val_fraction": "Hold out this fraction of {codes} for the validation loss.",
    }


@dataclass(frozen=True)
class TokenizerTrainRequest(TrainRequest):
    """``gigatok train tokenizer``: a tokenizer preset's recipe (then ``config``, then
    ``overrides``) on the images under ``data``, into the run folder ``output``; ``init`` starts from
    released weights, a weights file or a run folder; the frozen networks' weights are local files
    or (None) the download cache's."""

    preset: str
    data: PathLike
    output: PathLike
    overrides: Sequence[str] | None = None
    init: str | None = None
    config: PathLike | None = None
    teacher_weights: PathLike | None = None
    dino_weights: PathLike | None = None
    vgg_weights: PathLike | None = None
    workers: int | None = None
    resume: str = "auto"
    overwrite: bool = False

    HELP: ClassVar[dict[str, str]] = {
        "preset": "Tokenizer preset, e.g. s-s or tiny.",
        "data": "An ImageFolder tree or a flat folder of images.",
        "overrides": "key=value settings, e.g. recipe.disc_start=0 model.codebook_size=4096.",
        "init": "Start from a preset's released weights, a weights file or a run folder.",
    }
    AT_LEAST: ClassVar[dict[str, int]] = {"workers": 0}

    @property
    def frozen(self) -> dict[str, PathLike | None]:
        """The frozen networks' local files by role (None: the download cache's)."""
        return {"teacher": self.teacher_weights, "dino": self.dino_weights, "vgg": self.vgg_weights}


EXPORT_FORMATS = ("safetensors", "hub")


@dataclass(frozen=True)
class ExportRequest(Request):
    """``gigatok train export``: the inference weights of ``run_dir`` (``weights``: the group, default
    EMA when kept) to ``dest`` as one self-describing .safetensors file, or (``format="hub"``) as a
    Hugging Face model repository folder, or uploaded to the Hub repo ``to_hub`` (``dest`` optional
    then: a copy of the folder). Every combination is checked here, before any work."""

    run_dir: PathLike
    dest: PathLike | None = None
    weights: str | None = None
    format: str = "safetensors"
    to_hub: str | None = None
    private: bool = False
    revision: str | None = None
    overwrite: bool = False

    FLAGS: ClassVar[dict[str, str]] = {"run_dir": "RUN_DIR", "dest": "DEST"}
    HELP: ClassVar[dict[str, str]] = {
        "run_dir": "A run folder (or one of its checkpoint folders).",
        "dest": "The .safetensors file to write; with {format} hub a folder (optional with {to_hub}).",
        "weights": "Weights group (default: ema when kept, else model).",
        "format": "safetensors: one self-describing file. hub: a Hugging Face model repository folder "
        "(model.safetensors, config.json, README.md model card).",
        "to_hub": "Upload the hub folder to this Hugging Face repo (OWNER/REPO; created if missing). "
        "Needs HF_TOKEN or `hf auth login`.",
        "private": "With {to_hub}: create the repo private.",
        "revision": "With {to_hub}: the branch to commit to (created from main).",
        "overwrite": "Replace an existing file.",
    }
    AT_LEAST: ClassVar[dict[str, int]] = {}

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise self.error(
                f"{{format}} {literal(self.format)}: want safetensors or hub", hint="e.g. {format} hub"
            )
        if self.to_hub is None and (self.private or self.revision):
            raise self.error("{private} and {revision} go with {to_hub}", hint="add {to_hub} OWNER/REPO")
        if self.to_hub is not None and self.dest is not None and Path(self.dest).suffix == ".safetensors":
            raise self.error(
                f"{{to_hub}} uploads a repository folder; {literal(self.dest)} names a file",
                hint="drop {dest} (a temporary folder is used), or name a folder to keep a copy",
            )
        if self.to_hub is None and self.dest is None:
            raise self.error(
                "name the file (or folder) to write", hint="gigatok train export RUN_DIR OUT.safetensors"
            )


__all__ = [
    "ADM_REFERENCE",
    "EXPORT_FORMATS",
    "INCEPTION_WEIGHTS",
    "SETTING_HELP",
    "VGG_WEIGHTS",
    "AuxFile",
    "BuildRefRequest",
    "Device",
    "ExportRequest",
    "ExtractCodesRequest",
    "FIDRequest",
    "Folder",
    "GFIDRequest",
    "GPTTrainRequest",
    "GPTWeights",
    "LocalFile",
    "Need",
    "RFIDRequest",
    "ReconstructRequest",
    "Request",
    "SampleRequest",
    "TokenizerTrainRequest",
    "TokenizerWeights",
    "TrainRequest",
    "ValLossRequest",
]
