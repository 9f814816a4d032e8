"""An inter-process lock whose file is removed on release, so a cache holds no stray ``.lock`` files.

Removing a lock file is racy with a plain ``flock``: a waiter that opened the old file gets the lock
on an unlinked inode while a newcomer locks a fresh file at the same path, and both "hold" it. So
the holder unlinks the file *before* unlocking, and whoever acquires checks that the path still names
the inode it locked; if not, it reopens and tries again (the usual unlink-safe flock protocol).

Where ``fcntl`` is missing (Windows), :class:`filelock.FileLock` is used; it deletes its file on
release there.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class RemovableLock:
    """``with RemovableLock(path):`` holds an exclusive lock on ``path``; the file is gone after.

    Not re-entrant: a second ``RemovableLock`` on the same path in the same process waits like
    another process would (flock locks belong to the open file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._fallback = None

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False instead of waiting."""
        if self._fd is not None or self._fallback is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows
            from filelock import FileLock, Timeout

            lock = FileLock(str(self.path))
            try:
                lock.acquire(timeout=-1 if blocking else 0)
            except Timeout:
                return False
            self._fallback = lock
            return True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)  # the previous holder removed this file after we opened it: start again

    def release(self) -> None:
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.release()
            self._fallback = None
            return
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: waiters on this inode retry
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RemovableLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
