"""The linear-probe recipe (:class:`ProbeConfig`) and what each of its settings means.

A plain dataclass without torch, so that ``gigatok probe --help`` shows the recipe's options with
their defaults without loading the probe; the loop that runs it is :mod:`gigatok_core.probe.run`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gigatok_core.errors import GigatokError

#: What each recipe setting means (the --help of ``gigatok probe``'s recipe options)
PROBE_HELP = {
    "epochs": "Epochs of the schedule (official 90).",
    "warmup_epochs": "Warm-up epochs (default: 10 of every 90).",
    "subset": "Use only the first N images per class.",
    "batch_size": "Images per batch per process (official 128).",
    "blr": "Base lr: lr = blr x global batch / 256 (official 0.1).",
    "precision": "fp32, bf16, fp16 (default: the official one, fp16 for GPT probes on CUDA, else fp32).",
    "cache_features": "Compute the frozen features once (backbone in eval mode) and reuse them; default: "
    "the official online protocol (every epoch re-augments and re-encodes).",
    "cache_draws": "With --cache-features: augmented draws per train image (0: centre crop).",
    "cache_dir": "Feature cache folder (default RUN_DIR/features).",
    "augment": "Online train augmentation (ADM random crop + flip).",
    "workers": "DataLoader workers decoding images.",
    "seed": "Head init, data order and augmentation seed.",
}


@dataclass
class ProbeConfig:
    """The probe recipe; defaults are the official ones (docs/recipes.md#linear-probing)."""

    epochs: int = 90
    warmup_epochs: float | None = None  # None: 10 of every 90 epochs (the official 10 of 90)
    batch_size: int = 128  # per process (the official LIN_BSZ per GPU)
    blr: float = 0.1
    lr: float | None = None  # absolute; None: blr * batch_size * processes / 256
    momentum: float = 0.9
    weight_decay: float = 0.0
    trust_coefficient: float = 0.001
    augment: bool = True  # train: ADM random crop + flip; False: the val centre crop
    backbone_train_mode: bool = True  # official: the backbone's dropouts stay on while the head trains
    subset: int | None = None  # images per class in each split
    seed: int = 0
    precision: str = "fp32"  # backbone and head autocast (official GPT probe: fp16, tokenizer: fp32)
    cache_features: bool = False
    cache_draws: int = 0  # cached train features: 0 = centre crop once; K = K augmented draws
    cache_dir: str | None = None  # default RUN_DIR/features
    workers: int = 0  # DataLoader workers decoding images
    layer: int | None = None  # GPT feature block (default n_layer // 2)

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise GigatokError(f"invalid probe setting: {msg}")

        need(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        need(
            self.batch_size >= 2,
            f"batch_size must be at least 2 (BatchNorm statistics), got {self.batch_size}",
        )
        need(self.blr > 0 and (self.lr is None or self.lr > 0), "the learning rate must be positive")
        need(
            self.warmup_epochs is None or 0 <= self.warmup_epochs <= self.epochs,
            "warmup_epochs in [0, epochs]",
        )
        need(self.subset is None or self.subset >= 1, f"subset must be at least 1, got {self.subset}")
        need(self.cache_draws >= 0, f"cache_draws must be >= 0, got {self.cache_draws}")
        need(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        need(
            self.precision in ("fp32", "bf16", "fp16"),
            f"precision must be fp32, bf16 or fp16, not {self.precision!r}",
        )

    @property
    def warmup(self) -> float:
        return self.epochs * 10 / 90 if self.warmup_epochs is None else self.warmup_epochs
