"""The ``gigatok`` command: a thin Typer app over :mod:`gigatok_core`.

- :mod:`~gigatok_cli.main`: the lazy command table (``--help`` imports no command module).
- :mod:`~gigatok_cli.options`: every option shared by several commands, declared once as an
  ``Annotated`` alias, and :func:`~gigatok_cli.options.option_group`, the one way a group of
  options (the launcher's, the training run settings, the probe recipe) is added to commands.
- :mod:`~gigatok_cli.run`: the one sequence of a command that runs a request (fetch, maybe launch
  workers, progress, render); :mod:`~gigatok_cli.train_common`: the training commands' sequence.
- :mod:`~gigatok_cli.launch` / :mod:`~gigatok_cli.launch_worker`: ``--nproc-per-node`` (torchrun).
- One module per command or group (``download``, ``cache``, ``reconstruct``, ``sample``, ``train``
  with ``train_codes`` / ``train_tokenizer``, ``eval`` with ``eval_ar``, ``probe``), each parsing
  options, calling one library function and rendering its result; ``completion`` writes the static
  shell completion scripts.
"""
