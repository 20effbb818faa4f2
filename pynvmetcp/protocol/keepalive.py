"""Keep-alive bookkeeping with time passed in (seconds, any monotonic origin).

The host sends Keep Alive at half the KATO so that one lost or slow command never lets the
controller's timer expire; the controller drops the association when nothing arrived for KATO
(the kernel's nvmet adds no grace; we add none either, so both sides agree on the deadline).
"""
from __future__ import annotations


class HostKeepAlive:
    def __init__(self, kato_ms: int) -> None:
        self.interval = kato_ms / 2000.0
        self._last: float | None = None
        self.outstanding = False

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self, now: float) -> None:
        self._last = now

    def due(self, now: float) -> bool:
        """True when a Keep Alive should be sent now (never two at once)."""
        return (self.enabled and not self.outstanding and self._last is not None
                and now - self._last >= self.interval)

    def next_deadline(self) -> float | None:
        if not self.enabled or self._last is None:
            return None
        return self._last + self.interval

    def sent(self, now: float) -> None:
        self.outstanding = True
        self._last = now

    def completed(self) -> None:
        self.outstanding = False


class ControllerKeepAlive:
    """KATO expiry: any command received on any queue of the controller restarts the timer."""

    def __init__(self, kato_ms: int, now: float) -> None:
        self.kato = kato_ms / 1000.0
        #: When the last command arrived (the hot path sets it directly: one call less per command)
        self.last = now

    def touch(self, now: float) -> None:
        self.last = now

    def expired(self, now: float) -> bool:
        return self.kato > 0 and now - self.last > self.kato

    def deadline(self) -> float | None:
        return self.last + self.kato if self.kato > 0 else None
