"""Run folders: the one output folder of every command, and what it says about the run that made it.

- :mod:`~gigatok_core.runs.folder`: :class:`RunFolder`, an output folder a run claims, that refuses
  another run's folder (naming the settings that differ), resumes its own, removes only its own
  files on ``--overwrite`` and is released by a start that fails. Sampling, codes extraction, the
  trainers, the probe and the CFG search all use it.
- :mod:`~gigatok_core.runs.settings`: one writer of a run's resolved settings with its provenance
  (gigatok version, command line, time).

Layer: above :mod:`gigatok_core.dist` and ``utils``, below ``checkpoints``, so that every command's
output, training included, can use it.
"""

from gigatok_core.runs.folder import RunFolder

__all__ = ["RunFolder"]
