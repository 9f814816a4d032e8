"""The class-conditional AR half: GPT model, generation with CFG, loading, class names.

Layer: a sibling of ``tokenizer`` and :mod:`gigatok_core.weights` (they may import each other:
the loaders fetch through ``weights``, which builds the model classes for its shape check), above
``hub``, below ``data``.
"""

from gigatok_core.ar.classes import class_name, class_names, parse_classes, resolve_class
from gigatok_core.ar.generate import (
    Drawer,
    SamplingParams,
    filter_logits,
    generate,
    sample_generators,
    sample_seed,
)
from gigatok_core.ar.gpt import GPT, KVCache
from gigatok_core.ar.guidance import SCHEDULES, CFGSchedule
from gigatok_core.ar.load import build_gpt, check_fits_tokenizer, load_gpt
from gigatok_core.ar.sjd import SJDStats, generate_sjd

__all__ = [
    "GPT",
    "SCHEDULES",
    "CFGSchedule",
    "Drawer",
    "KVCache",
    "SJDStats",
    "SamplingParams",
    "build_gpt",
    "check_fits_tokenizer",
    "class_name",
    "class_names",
    "filter_logits",
    "generate",
    "generate_sjd",
    "load_gpt",
    "parse_classes",
    "resolve_class",
    "sample_generators",
    "sample_seed",
]
