"""Bounded polling for tests whose peer changes state on its own (a kernel, a service thread).

Why polling at all: the kernel's namespace scan, multipath path changes and a service's
reconnects have no event a test can subscribe to; a bounded poll with a stated reason is the
honest form of "wait for it", never a bare sleep.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def poll(pred: Callable[[], T], timeout: float, interval: float = 0.1) -> T:
    """The first truthy value of ``pred()`` within ``timeout`` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    return pred()


def wait_until(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Like ``poll``, but a timeout raises TimeoutError naming ``what`` was awaited."""
    value = poll(pred, timeout, interval)
    if not value:
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
    return value
