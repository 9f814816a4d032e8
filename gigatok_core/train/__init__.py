"""Training: one loop for every model (:mod:`~gigatok_core.train.engine`), the GPT task
(:mod:`~gigatok_core.train.gpt`) and the tokenizer task (:mod:`~gigatok_core.train.tokenizer`).

Import the submodules directly; this package imports nothing heavy.

Layer: the top of the library beside ``evaluation`` and ``probe`` (the three import none of
each other), above ``tasks``, below ``gigatok_cli``.
"""
