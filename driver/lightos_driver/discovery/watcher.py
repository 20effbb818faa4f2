"""Watching discovery.d: a change of any entry file makes the service re-read the directory.

Why re-read the whole directory instead of applying each event: events can be coalesced, lost on
queue overflow, or arrive for a file already replaced again; a full re-read is idempotent and the
directory holds one small file per volume. inotify (via inotify_simple) when available, else a
poll of the directory listing and mtimes, so the service also runs where inotify is exhausted.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable

from ..entries import is_entry_file_name

log = logging.getLogger(__name__)


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    out = {}
    try:
        for name in os.listdir(directory):
            if is_entry_file_name(name):
                try:
                    st = os.stat(directory / name)
                    out[name] = (st.st_ino, st.st_mtime_ns)
                except FileNotFoundError:
                    pass
    except FileNotFoundError:
        pass
    return out


class DirWatcher:
    """Calls ``on_change(names)`` after entry files appear, are replaced or vanish."""

    def __init__(self, directory: Path, on_change: Callable[[set[str]], None], *,
                 poll_interval: float = 2.0, debounce: float = 0.1,
                 use_inotify: bool = True) -> None:
        self.directory = Path(directory)
        self.on_change = on_change
        self.poll_interval = poll_interval
        self.debounce = debounce
        self.use_inotify = use_inotify
        self.mode = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        inotify = self._open_inotify() if self.use_inotify else None
        self.mode = "inotify" if inotify else "poll"
        target = (lambda: self._inotify_loop(inotify)) if inotify else self._poll_loop
        self._thread = threading.Thread(target=target, name="dc-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _open_inotify(self):
        try:
            from inotify_simple import INotify, flags
        except ImportError:
            log.warning("inotify_simple not installed: polling %s", self.directory)
            return None
        try:
            ino = INotify()
            mask = (flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE
                    | flags.CLOSE_WRITE | flags.DELETE_SELF | flags.MOVE_SELF)
            ino.add_watch(str(self.directory), mask)
            return ino
        except OSError as exc:
            log.warning("inotify unavailable (%s): polling %s", exc, self.directory)
            return None

    def _inotify_loop(self, ino) -> None:
        try:
            while not self._stop.is_set():
                events = ino.read(timeout=500)
                if not events:
                    continue
                if self.debounce:
                    events += ino.read(timeout=int(self.debounce * 1000))
                names = {e.name for e in events if e.name and is_entry_file_name(e.name)}
                if any(not e.name for e in events):  # the directory itself moved/was removed
                    log.error("%s itself changed; falling back to polling", self.directory)
                    self.mode = "poll"
                    self._poll_loop()
                    return
                if names:
                    self._fire(names)
        finally:
            ino.close()

    def _poll_loop(self) -> None:
        before = _snapshot(self.directory)
        while not self._stop.wait(self.poll_interval):
            now = _snapshot(self.directory)
            changed = {n for n in set(before) | set(now) if before.get(n) != now.get(n)}
            before = now
            if changed:
                self._fire(changed)

    def _fire(self, names: set[str]) -> None:
        try:
            self.on_change(names)
        except Exception:  # noqa: BLE001 - the watcher must outlive a failed reconcile
            log.exception("handling changes of %s failed", sorted(names))
