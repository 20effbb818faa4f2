"""One volume operation at a time on this host, across threads and processes.

os-brick serializes LightOS connect/disconnect/extend with a process-wide lock; here the startup
reconnect (its own process) touches the same entry files as nova-compute, so the lock is also a
flock(2) on a file in the state dir. Re-entrant within a thread: flock is taken once, at the
outermost level (a second flock on a new fd of the same file would wait for ourselves).
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)
_thread_locks: dict[str, threading.RLock] = {}
_guard = threading.Lock()
_depth = threading.local()


@contextmanager
def volume_lock(lock_file: Path) -> Iterator[None]:
    key = str(lock_file)
    with _guard:
        tlock = _thread_locks.setdefault(key, threading.RLock())
    with tlock:
        depths: dict[str, int] = _depth.__dict__.setdefault("d", {})
        outermost = depths.get(key, 0) == 0
        depths[key] = depths.get(key, 0) + 1
        fd = _flock(lock_file) if outermost else None
        try:
            yield
        finally:
            depths[key] -= 1
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _flock(lock_file: Path) -> int | None:
    fd = None
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd
    except OSError as exc:
        log.debug("no inter-process lock at %s (%s); thread lock only", lock_file, exc)
        if fd is not None:
            os.close(fd)
        return None


class AttachMarker:
    """"An attach of this volume is waiting for its device": a shared flock on a per-volume file.

    Why: an attach holds the host-wide lock only to write the entry file, not through the device
    wait (up to a minute), so attaches of other volumes are not held up by a slow one. When an
    attach fails, the entry file it created is removed only if no other attach of the same
    volume still waits on it (``others_waiting``); otherwise the duty passes to those waiting
    (``hand_over``), and the last of them to fail removes it, as one attach alone would have.
    Take the marker under the host-wide lock, before releasing it, so that no attach is ever
    between the two; ask and hand over under the host-wide lock too. Attaches of this process
    are also counted in memory, so they see each other even where the file cannot be made.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key = str(path)
        self._fd: int | None = None
        self._counted = False

    def hold(self) -> "AttachMarker":
        with _guard:
            _local_waiting[self._key] = _local_waiting.get(self._key, 0) + 1
        self._counted = True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_SH)
        except OSError as exc:
            log.debug("no attach marker at %s (%s): this process's attaches only", self.path,
                      exc)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        return self

    def release(self) -> None:
        if self._counted:
            self._counted = False
            with _guard:
                _local_waiting[self._key] -= 1
                if not _local_waiting[self._key]:
                    del _local_waiting[self._key]
        if self._fd is not None:
            os.close(self._fd)  # closing the last fd of the description drops the flock
            self._fd = None

    def others_waiting(self) -> bool:
        """After ``release``: whether another attach of the volume still waits.

        When none does, the file goes: every new holder opens it under the host-wide lock,
        which the caller holds, so no one can be holding the unlinked file."""
        if _local_waiting.get(self._key):
            return True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            _handed_over.pop(self._key, None)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            pass
        finally:
            os.close(fd)
        _handed_over.pop(self._key, None)
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("could not remove %s: %s", self.path, exc)
        return False

    def handed_over(self) -> bool:
        """Whether an attach that gave up left the removal of its entry file to the others."""
        if _handed_over.get(self._key):
            return True
        try:
            return self.path.read_bytes() == b"1"
        except OSError:
            return False

    def hand_over(self, pending: bool) -> None:
        """While others wait: record whether the entry file is theirs to remove if they all
        fail (True: its creator gave up; False: an attach succeeded, so it stays in use)."""
        _handed_over[self._key] = pending
        try:
            self.path.write_bytes(b"1" if pending else b"")
        except OSError as exc:
            log.debug("could not record the hand-over in %s: %s", self.path, exc)


_local_waiting: dict[str, int] = {}  # marker path → attaches of this process waiting
_handed_over: dict[str, bool] = {}  # marker path → the hand-over, where the file cannot say
