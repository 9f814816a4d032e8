"""Small helpers every layer uses: atomic file writes and hashing, and the progress protocol.

- :mod:`~gigatok_core.utils.fileio`: ``atomic_write`` and friends, ``sha256_file``, free-space checks.
- :mod:`~gigatok_core.utils.progress`: ``on_progress(done, total, stage=...)``.

The domain error type is :class:`gigatok_core.errors.GigatokError`.

Layer: the bottom, beside :mod:`gigatok_core.choices` and above only :mod:`gigatok_core.errors`;
every layer may import it, and it imports nothing else of gigatok.
"""
