"""When to try re-establishing a lost association, with time passed in (fabrics.c semantics).

After a loss the host retries every ``reconnect_delay`` seconds until ``ctrl_loss_tmo`` seconds
have passed since the loss; a negative ``ctrl_loss_tmo`` retries forever and 0 never retries.
A failure the controller marks Do Not Retry ends the attempts at once.
"""
from __future__ import annotations

import math


class ReconnectPolicy:
    def __init__(self, ctrl_loss_tmo: float = 600.0, reconnect_delay: float = 10.0) -> None:
        if reconnect_delay <= 0:
            raise ValueError("reconnect_delay must be positive")
        self.ctrl_loss_tmo = ctrl_loss_tmo
        self.reconnect_delay = reconnect_delay
        self._lost_at: float | None = None
        self.attempts = 0

    @property
    def max_attempts(self) -> float:
        """ceil(ctrl_loss_tmo / reconnect_delay), as the kernel computes max_reconnects."""
        if self.ctrl_loss_tmo < 0:
            return math.inf
        return math.ceil(self.ctrl_loss_tmo / self.reconnect_delay)

    def lost(self, now: float) -> None:
        self._lost_at = now
        self.attempts = 0

    def next_attempt(self, now: float, dnr: bool = False) -> float | None:
        """Seconds to wait before the next attempt, or None when it is time to give up."""
        if dnr or self._lost_at is None or self.attempts >= self.max_attempts:
            return None
        due = self._lost_at + self.attempts * self.reconnect_delay  # attempt 0 is immediate
        self.attempts += 1
        return max(0.0, due - now)

    def recovered(self) -> None:
        self._lost_at = None
        self.attempts = 0
