"""The GigaTok VQ tokenizer (docs/tokenizer.md#module-names, #encoder, #quantizer, #the-2d-variants): model, builder and checkpoint loader.

tok = load_tokenizer("s-s")                 # official weights via the cache
codes = tok.encode(images)                  # (B,3,256,256) in [-1,1] -> (B,256) int64
recon = tok.decode_codes(codes)             # -> (B,3,256,256), unclamped

Layer: a sibling of ``ar`` and :mod:`gigatok_core.weights` (the loader fetches through
``weights``, which builds the model class for its shape check), above ``hub``, below ``data``.
"""

from gigatok_core.tokenizer.load import build_tokenizer, guess_preset, load_tokenizer
from gigatok_core.tokenizer.model import TokenizerOutput, VQTokenizer, init_weights
from gigatok_core.tokenizer.quantizer import QuantizerOutput, VectorQuantizer

__all__ = [
    "QuantizerOutput",
    "TokenizerOutput",
    "VQTokenizer",
    "VectorQuantizer",
    "build_tokenizer",
    "guess_preset",
    "init_weights",
    "load_tokenizer",
]
