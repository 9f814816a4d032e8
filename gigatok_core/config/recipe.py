"""Training recipes: the optimisation and loss settings of the official scripts, typed and validated.

A recipe says *how the paper trained* a preset; the architecture stays in the model config (so the
quantizer's ``commit_beta``/``entropy_loss_ratio`` and the GPT's dropouts live in
:class:`TokenizerConfig`/:class:`GPTConfig`, where the official code reads them), and how *this*
run is executed (steps, devices, checkpoints) is :class:`gigatok_core.config.RunConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gigatok_core.config.build import check

PRECISIONS = ("fp32", "bf16", "fp16")

# One official "epoch" is 5000 steps at batch 256 (docs/recipes.md#loop-and-data, #gpt).
STEPS_PER_EPOCH_AT_256 = 5000


def epochs_to_steps(epochs: int, global_batch_size: int) -> int:
    """The composite scripts' conversion from "epochs" to iterations: the steps of one epoch
    first, ``256 * 5000 // batch`` (shell integer division), then times the epochs
    (``scripts/composite_cmd/train_c2i_and_eval.sh``, ``EPOCH_TO_ITER_FACTOR``; the tokenizer's
    ``TOK_ITER`` alike). At a batch that does not divide 1,280,000 the run is slightly shorter than
    ``epochs * 1,280,000 / batch``: 300 epochs at batch 384 are 999,900 steps, not 1,000,000."""
    return epochs * (STEPS_PER_EPOCH_AT_256 * 256 // global_batch_size)


def _common(r: TokenizerRecipe | GPTRecipe) -> None:
    check(r.lr > 0, "lr must be positive")
    check(len(r.betas) == 2 and all(0.0 <= b < 1.0 for b in r.betas), "betas must be two numbers in [0, 1)")
    check(r.weight_decay >= 0, "weight_decay must be >= 0")
    check(r.max_grad_norm > 0, "max_grad_norm must be positive (the official recipes always clip)")
    check(r.global_batch_size > 0, "global_batch_size must be positive")
    check(r.warmup >= 0, "warmup must be >= 0")
    check(r.epochs > 0, "epochs must be positive")
    check(0.0 < r.ema_decay < 1.0, "ema_decay must be in (0, 1)")
    check(r.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {r.precision!r}")


# ---------------------------------------------------------------------------------------------
# Tokenizer (vq_train.py / vq_train_fsdp.py and configs/vq/*.yaml; docs/tokenizer.md#sizes-and-presets, #semantic-regularization, docs/recipes.md#tokenizer, #details-pinned-by-the-training-fixture)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenizerRecipe:
    """Training recipe of an official tokenizer YAML plus the ``vq_train.py`` defaults.

    ``codebook_weight`` is absent on purpose: the official VQLoss never applies it (docs/recipes.md#generator-loss).
    """

    # Optimiser (AdamW) and clipping, generator and discriminator alike (docs/recipes.md#loop-and-data).
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-4
    max_grad_norm: float = 10.0
    disc_max_grad_norm: float = 10.0
    # Length and schedule: cosine_v2 from lr to end_lr after a linear warmup from lr/100 (docs/recipes.md#loop-and-data).
    global_batch_size: int = 128  # vq_train.py default; the released presets set 128 or 256
    epochs: int = 100
    warmup: int = 0
    lr_scheduler: str = "cosine_v2"
    end_lr: float = 1e-5
    # Generator loss weights (docs/recipes.md#generator-loss). Hinge losses; the adaptive weight is fixed at 1.
    reconstruction_loss: str = "l2"
    reconstruction_weight: float = 1.0
    perceptual_weight: float = 1.0
    fea_rec_loss_weight: float = 1.0  # MSE of the CNN-feature reconstruction (aux window only)
    aux_loss_end: int = 15000  # direct-reconstruction and fea_rec terms stop at this global step
    use_direct_rec_loss: bool = True
    # Semantic regularization (docs/tokenizer.md#semantic-regularization): DINOv2 ViT-B/14 teacher, -cos loss weighted by proj_weight.
    distill_loss: bool = True
    distill_model: str = "dinov2-vit-b"
    proj_weight: float = 0.5
    # Discriminator (docs/recipes.md#discriminators).
    disc_type: str = "patchgan"  # patchgan | dinodisc
    disc_start: int = 20000
    disc_weight: float = 0.5
    disc_loss: str = "hinge"
    gen_loss: str = "hinge"
    disc_dim: int = 64
    disc_num_layers: int = 3
    disc_kw: int = 4
    disc_norm: str = "batch"
    lecam_weight: float = 0.0  # LeCam regularization, off in every preset (official value 0.001 when on)
    # EMA of the parameters (only with --ema; no official script passes it).
    ema: bool = False
    ema_decay: float = 0.9999
    # Execution defaults of the recipe (the run config can override them).
    precision: str = "fp16"  # the docs: fp16 for DDP presets, bf16 for XL-XXL
    fsdp: bool = False

    def __post_init__(self) -> None:
        _common(self)
        check(self.end_lr >= 0 and self.end_lr <= self.lr, "end_lr must be between 0 and lr")
        check(self.lr_scheduler == "cosine_v2", "lr_scheduler must be 'cosine_v2' (the official schedule)")
        check(self.reconstruction_loss in ("l1", "l2"), "reconstruction_loss must be 'l1' or 'l2'")
        check(
            self.disc_type in ("patchgan", "dinodisc"),
            f"disc_type must be patchgan or dinodisc, got {self.disc_type!r}",
        )
        check(
            self.disc_loss == "hinge" and self.gen_loss == "hinge", "disc_loss and gen_loss must be 'hinge'"
        )
        check(self.disc_norm == "batch", "disc_norm must be 'batch' (the official PatchGAN)")
        check(
            self.disc_dim > 0 and self.disc_num_layers > 0 and self.disc_kw > 0, "disc sizes must be positive"
        )
        check(self.disc_start >= 0 and self.aux_loss_end >= 0, "disc_start and aux_loss_end must be >= 0")
        check(self.disc_max_grad_norm > 0, "disc_max_grad_norm must be positive")
        for name in (
            "reconstruction_weight",
            "perceptual_weight",
            "fea_rec_loss_weight",
            "proj_weight",
            "disc_weight",
            "lecam_weight",
        ):
            check(getattr(self, name) >= 0, f"{name} must be >= 0")
        check(
            self.distill_model in ("dinov2-vit-b",),
            "distill_model must be 'dinov2-vit-b' (the only teacher of the official recipes)",
        )

    @property
    def steps(self) -> int:
        """Iterations of the official recipe (epochs at this batch size)."""
        return epochs_to_steps(self.epochs, self.global_batch_size)


# ---------------------------------------------------------------------------------------------
# GPT (train_c2i.py / train_c2i_fsdp.py and the composite scripts; docs/recipes.md#gpt)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPTRecipe:
    """Training recipe of the class-conditional GPT. Class dropout and the dropouts are in GPTConfig."""

    # AdamW: decay on tensors with ndim >= 2, none on 1-D (norm weights).
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    max_grad_norm: float = 1.0
    # Length and schedule: WSD = linear warmup from lr/100, constant, then the last
    # `fract_decay` of training decays as lr * (1 - sqrt(progress)) to 0.
    global_batch_size: int = 256
    epochs: int = 300
    lr_scheduler: str = "wsd"
    warmup: int = 5000
    fract_decay: float = 0.2
    # EMA (implemented, disabled in all recipes).
    ema: bool = False
    ema_decay: float = 0.9999
    # Execution defaults of the recipe (the run config can override them).
    precision: str = "fp16"  # composite scripts' PRECISION default (argparse says bf16)
    fsdp: bool = False
    compile: bool = True  # the DDP script compiles unless --no-compile; refused under FSDP

    def __post_init__(self) -> None:
        _common(self)
        check(self.lr_scheduler == "wsd", "lr_scheduler must be 'wsd' (the official schedule)")
        check(0.0 <= self.fract_decay <= 1.0, "fract_decay must be in [0, 1]")

    @property
    def steps(self) -> int:
        """Iterations of the official recipe (epochs at this batch size)."""
        return epochs_to_steps(self.epochs, self.global_batch_size)
