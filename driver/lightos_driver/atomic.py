"""Atomic file replacement: a temp file in the same directory, fsync, rename, fsync the directory.

Why the same directory: rename(2) is atomic only within one filesystem; os-brick writes its entry
file in /tmp and moves it, which on another filesystem becomes copy+delete and lets the
discovery-client read half a file. The temp name may carry a prefix the readers ignore
(``tmp.dc.`` for discovery.d).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike, data: str | bytes, *, prefix: str = ".tmp.",
                 mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike, obj: Any, **kw: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", **kw)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
