"""Data for training: image folders and augmentation, and pre-extracted tokenizer codes.

- :mod:`gigatok_core.data.codes`: the codes format (CODES_DIR: shards + manifest) and
  :class:`~gigatok_core.data.codes.CodesDataset`.
"""
