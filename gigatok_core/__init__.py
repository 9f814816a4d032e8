"""gigatok: GigaTok visual tokenizers and class-conditional autoregressive image generation.

The library behind the ``gigatok`` command; every command is a function here that takes the
command's typed request (:mod:`gigatok_core.config.requests`: ``SampleRequest``, ``RFIDRequest``, ...).

===============================  ===============================================================
command                          library
===============================  ===============================================================
``gigatok download``             :func:`gigatok_core.weights.fetch_weights`, :func:`~gigatok_core.weights.import_weights`,
                                 :func:`~gigatok_core.hub.verify_cache`, :func:`~gigatok_core.hub.catalog_rows`
``gigatok reconstruct``          :func:`gigatok_core.tasks.reconstruct.reconstruct`
``gigatok sample``               :func:`gigatok_core.tasks.sample.sample_images`
``gigatok eval fid``             :func:`gigatok_core.evaluation.commands.fid`
``gigatok eval build-ref``       :func:`gigatok_core.evaluation.commands.build_reference`
``gigatok eval rfid``            :func:`gigatok_core.evaluation.commands.rfid`
``gigatok eval gfid``            :func:`gigatok_core.evaluation.ar_commands.gfid`
``gigatok eval val-loss``        :func:`gigatok_core.evaluation.ar_commands.val_loss`
``gigatok train extract-codes``  :func:`gigatok_core.data.extract.extract_codes`
===============================  ===============================================================

Building blocks: :func:`gigatok_core.tokenizer.load_tokenizer` (a preset name -> a ready
:class:`~gigatok_core.tokenizer.VQTokenizer` with ``encode``/``decode_codes``),
:func:`gigatok_core.ar.load.load_gpt` and :func:`gigatok_core.ar.generate.generate`,
:mod:`gigatok_core.registry` (presets), :mod:`gigatok_core.config` (typed configs and overrides),
:mod:`gigatok_core.data.images` (pre/post-processing as the official code), :mod:`gigatok_core.utils.progress`
(the ``on_progress(done, total, stage=...)`` protocol), :mod:`gigatok_core.runs.settings` (the settings
file every run writes).

The packages are layers; a module imports only from its own layer and those below (an
import-linter contract, ``[tool.importlinter]`` in pyproject.toml, checks it). Bottom to top:

1. ``errors``; then ``utils`` (atomic writes, hashing, progress) and ``choices`` (option values)
2. ``dist`` (ranks, collectives, devices)
3. ``runs`` (a run's folder and settings)
4. ``checkpoints`` (official files, self-describing safetensors, training step folders)
5. ``config`` (typed configs, the override grammar, the preset files)
6. ``registry`` (presets and weights records)
7. ``hub`` (storage: download, cache, ``hf://``; it knows no model)
8. ``tokenizer``, ``ar`` and ``weights`` (the models, their loaders, and the weights resolver)
9. ``data`` (image folders, codes, extraction)
10. ``tasks`` (reconstruct, sample)
11. ``evaluation``, ``probe``, ``train`` (independent of each other)

and ``gigatok_cli`` above them all.
"""

__version__ = "0.1.0"

from gigatok_core.errors import GigatokError

__all__ = ["GigatokError", "__version__"]
