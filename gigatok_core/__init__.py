"""gigatok: GigaTok visual tokenizers and class-conditional autoregressive image generation.

The library behind the ``gigatok`` command. Every command is a function here:

- :func:`gigatok_core.config.tokenizer_config` / :func:`gigatok_core.config.gpt_config`: presets -> typed configs
- :func:`gigatok_core.tokenizer.load_tokenizer`: a preset name or a checkpoint file -> a ready model
- :func:`gigatok_core.reconstruct.reconstruct`: images -> reconstructions, codes, metrics
"""

__version__ = "0.1.0"

from gigatok_core.errors import GigatokError

__all__ = ["GigatokError", "__version__"]
