"""The inference tasks behind ``gigatok reconstruct`` and ``gigatok sample``.

- :mod:`~gigatok_core.tasks.reconstruct`: images -> codes -> images, with per-image metrics
  (:mod:`~gigatok_core.tasks.image_metrics`).
- :mod:`~gigatok_core.tasks.sample`: class-conditional sampling, GPT -> codes -> tokenizer -> PNGs,
  into a sampling run's folder (:mod:`~gigatok_core.tasks.sample_output`).
- :mod:`~gigatok_core.tasks.fetch`: :func:`~gigatok_core.tasks.fetch.fetch_required`, everything a
  request (:mod:`gigatok_core.config.requests`) lists in ``required_files()``, checked and fetched
  once (by the launcher's parent before its workers start).

Each takes its command's request and runs alone or under torchrun (:mod:`gigatok_core.dist`). The
evaluations built on them are in :mod:`gigatok_core.evaluation`.

Layer: above ``data`` and the model packages, below ``evaluation``, ``probe`` and ``train``,
which build on these tasks.
"""
