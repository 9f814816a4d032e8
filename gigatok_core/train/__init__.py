"""Training: one loop for every model (:mod:`~gigatok_core.train.engine`), the GPT task
(:mod:`~gigatok_core.train.gpt`) and the tokenizer task (:mod:`~gigatok_core.train.tokenizer`);
a finished run's weights leave through :func:`~gigatok_core.train.export.export_run` (one
self-describing file, or a Hugging Face repository folder, uploaded or not). A train config is built
from a preset, a file, overrides and run settings by ``GPTTrainConfig.from_options`` /
``TokenizerTrainConfig.from_options`` (:mod:`gigatok_core.config`). A run writes into its run
folder (:mod:`~gigatok_core.train.run_dir`: a :class:`~gigatok_core.runs.folder.RunFolder` named by
``config.yaml``, and the metrics log).

Import the submodules directly; this package imports nothing heavy.

Layer: the top of the library beside ``evaluation`` and ``probe`` (the three import none of
each other), above ``tasks``, below ``gigatok_cli``.
"""
