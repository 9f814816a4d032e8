"""Typed configs: architectures, training recipes, run settings, and the one override grammar.

A config says *what the architecture is* (:class:`TokenizerConfig`, :class:`GPTConfig`) or *how
to train it* (:class:`TokenizerRecipe`, :class:`GPTRecipe`, :class:`RunConfig`, nested in
:class:`TokenizerTrainConfig` / :class:`GPTTrainConfig`); where weights live is a separate record
(:mod:`gigatok_core.registry`). Configs are dataclasses validated in ``__post_init__`` and merged
by :func:`build_config`: ``preset -> --config file.yaml -> key=value``, unknown keys are errors.

Modules: ``sizes`` (the size tables), ``model`` (architectures), ``recipe``, ``train`` (run + train
configs), ``build`` (the merge), ``source`` (``from_checkpoint``), ``requests`` (one typed request
per command: ``SampleRequest``, ``ReconstructRequest``, ``RFIDRequest`` ..., ``GPTTrainRequest``,
``ExportRequest``, each checked once, saying what each of its settings means and listing the
files its run reads), ``probe`` (the linear-probe recipe), ``preset_files`` (reading
``presets/*.yaml``).

Layer: above ``checkpoints`` (``source`` reads a checkpoint's metadata), below
:mod:`gigatok_core.registry`, which reads the preset files through ``preset_files``.
"""

from gigatok_core.config.build import build_config, config_to_dict, load_yaml, parse_dotlist
from gigatok_core.config.model import GPTConfig, TokenizerConfig
from gigatok_core.config.recipe import PRECISIONS, GPTRecipe, TokenizerRecipe, epochs_to_steps
from gigatok_core.config.sizes import GPT_SIZES, VIT_SIZES
from gigatok_core.config.train import STRATEGIES, GPTTrainConfig, RunConfig, TokenizerTrainConfig

__all__ = [
    "GPT_SIZES",
    "PRECISIONS",
    "STRATEGIES",
    "VIT_SIZES",
    "GPTConfig",
    "GPTRecipe",
    "GPTTrainConfig",
    "RunConfig",
    "TokenizerConfig",
    "TokenizerRecipe",
    "TokenizerTrainConfig",
    "build_config",
    "config_to_dict",
    "epochs_to_steps",
    "load_yaml",
    "parse_dotlist",
]
