"""The ``gigatok`` command: a thin Typer app over :mod:`gigatok_core`.

- :mod:`~gigatok_cli.main`: the lazy command table (``--help`` imports no command module).
- :mod:`~gigatok_cli.options`: options made from the library's settings
  (:func:`~gigatok_cli.options.dataclass_options`: a request's fields, the launcher's, the training
  run settings, the probe recipe), and :func:`~gigatok_cli.options.option_group`, the one way a
  group of options is added to a command.
- :mod:`~gigatok_cli.run`: a request's settings as a command's options, and the one sequence of a
  command that runs a request (fetch, maybe launch workers, progress, render).
- :mod:`~gigatok_cli.launch` / :mod:`~gigatok_cli.launch_worker`: ``--nproc-per-node`` (torchrun).
- One module per command or group (``download``, ``cache``, ``reconstruct``, ``sample``, ``train``,
  ``eval``, ``probe``), each declaring its requests, calling the library and rendering the result;
  ``completion`` writes the static shell completion scripts.
"""
