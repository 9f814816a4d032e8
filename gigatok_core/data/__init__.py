"""Data for training: image folders and augmentation, and pre-extracted tokenizer codes.

- :mod:`gigatok_core.data.folder`: :class:`~gigatok_core.data.folder.ImageFolderDataset` (ImageFolder
  tree or flat folder), :func:`~gigatok_core.data.folder.make_loader` (unreadable images skipped, named once).
- :mod:`gigatok_core.data.transforms`: the official train augmentation, the ADM centre crop, ten-crop.
- :mod:`gigatok_core.data.codes_format`: the codes format (CODES_DIR: shards + manifest);
  :mod:`gigatok_core.data.codes`: :class:`~gigatok_core.data.codes.CodesDataset`, ``holdout_split``.
- :mod:`gigatok_core.data.extract`: ``gigatok train extract-codes``, into a codes folder
  (:mod:`gigatok_core.data.codes_dir`: a :class:`~gigatok_core.runs.folder.RunFolder` named by ``extract.json``).

Import the submodules directly (this package imports nothing, so ``import gigatok_core.data`` is free).

Layer: above the model packages (extraction encodes with the tokenizer), below ``tasks``.
"""
