"""The ``gigatok`` command: a thin Typer app over :mod:`gigatok_core`."""
