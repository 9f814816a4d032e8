"""Run folders: what every command writes beside its outputs to say what produced them.

- :mod:`~gigatok_core.runs.settings`: one writer of a run's resolved settings with its provenance
  (gigatok version, command line, time).

Layer: above :mod:`gigatok_core.dist` and ``utils``, below ``checkpoints``, so that every command's
output, training included, can use it.
"""
