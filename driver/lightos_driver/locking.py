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


def _flock(lock_file: Path, mode: int = fcntl.LOCK_EX) -> int | None:
    """An fd holding ``mode`` on ``lock_file`` (made if missing); None when the file cannot
    be had, and the caller makes do with what this process knows."""
    fd = None
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, mode)
        return fd
    except OSError as exc:
        log.debug("no inter-process lock at %s (%s); this process only", lock_file, exc)
        if fd is not None:
            os.close(fd)
        return None


class AttachMarker:
    """"An attach of this volume is waiting for its device": a shared flock on a per-volume file.

    Why: an attach holds the host-wide lock only to write the entry file, not through the device
    wait (up to a minute), so attaches of other volumes are not held up by a slow one. When an
    attach fails, the entry file it created is removed only if no other attach of the same
    volume still waits on it; otherwise the duty passes to those waiting, and the last of them
    to fail removes it, as one attach alone would have (``settle``). Take the marker under the
    host-wide lock, before releasing it, so that no attach is ever between the two; settle
    under the host-wide lock too. Attaches of this process are also counted in memory, so they
    see each other even where the file cannot be made.
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
        self._fd = _flock(self.path, fcntl.LOCK_SH)
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

    def settle(self, created: bool, found: bool) -> bool:
        """After ``release``, under the host-wide lock: whether this attach is to remove the
        volume's entry file — when the device was not found and the file is its own (it
        created it, or an attach that gave up handed it over) and no other attach waits.
        While others wait, the removal passes to them (or lapses, the device being there).
        With nobody left waiting, the marker file goes: every new holder opens it under the
        host-wide lock, which the caller holds, so no one can be holding the unlinked file."""
        try:
            fd: int | None = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            fd = None
        try:
            # the hand-over lives in the marker file; in memory only where there is no file
            # (a copy in memory would outlive a hand-over that another process settled)
            handed = (os.pread(fd, 1, 0) == b"1" if fd is not None
                      else _handed_over.get(self._key, False))
            mine = created or handed
            if _local_waiting.get(self._key) or (fd is not None and _locked_by_others(fd)):
                pending = mine and not found
                if fd is not None:
                    os.ftruncate(fd, 0)
                    if pending:
                        os.pwrite(fd, b"1", 0)
                else:
                    _handed_over[self._key] = pending
                return False
            _handed_over.pop(self._key, None)
            if fd is not None:
                self.path.unlink(missing_ok=True)
            return mine and not found
        except OSError as exc:
            log.debug("attach marker %s: %s", self.path, exc)
            return False  # keep the entry file: a stale one is safer than a missing one
        finally:
            if fd is not None:
                os.close(fd)


def _locked_by_others(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    return False


_local_waiting: dict[str, int] = {}  # marker path → attaches of this process waiting
_handed_over: dict[str, bool] = {}  # marker path → the hand-over, where the file cannot say
