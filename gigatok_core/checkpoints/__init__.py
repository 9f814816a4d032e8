"""Checkpoint files: reading the official ones, writing self-describing ones, training folders.

- :mod:`~gigatok_core.checkpoints.files`: official ``.pt`` files read with ``weights_only=True`` and
  loaded strictly; gigatok's safetensors files, which carry their preset, architecture and pairing.
- :mod:`~gigatok_core.checkpoints.training`: a training run's checkpoints, a folder per step written
  atomically (with a folder's usual permissions) with a ``latest`` pointer written last.

Which weights a command uses (a preset name, a file, a run folder, an ``hf://`` id) is decided one
level up, in :mod:`gigatok_core.weights`; exporting a run's weights is :mod:`gigatok_core.train.export`.

Layer: above ``runs``, below ``config``: files only, it knows no preset.
"""
