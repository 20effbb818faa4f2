"""Asynchronous Event Request bookkeeping (controller side) and decoding (host side).

The controller keeps every AER the host armed and every event that happened while none was armed;
an event is delivered at most once, in order, and events of the same type are merged until the host
reads the log page that clears them (as the kernel's nvmet masks repeats).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..spec.cqe import aer_dw0


@dataclass(frozen=True, slots=True)
class AsyncEvent:
    aet: int
    aei: int
    lid: int

    @property
    def dw0(self) -> int:
        return aer_dw0(self.aet, self.aei, self.lid)

    @classmethod
    def from_dw0(cls, dw0: int) -> "AsyncEvent":
        return cls(dw0 & 7, (dw0 >> 8) & 0xFF, (dw0 >> 16) & 0xFF)


class AerQueue:
    def __init__(self, limit: int = 4) -> None:
        self.limit = limit  # AERL + 1
        self._armed: deque[int] = deque()
        self._pending: deque[AsyncEvent] = deque()
        self._masked: set[tuple[int, int]] = set()

    def arm(self, cid: int) -> tuple[int, AsyncEvent] | None:
        """Record an AER; returns (cid, event) to complete at once when an event is pending.

        Raises OverflowError when more than ``limit`` are outstanding (AER Limit Exceeded).
        """
        if self._pending:
            return cid, self._pending.popleft()
        if len(self._armed) >= self.limit:
            raise OverflowError("asynchronous event request limit exceeded")
        self._armed.append(cid)
        return None

    def post(self, event: AsyncEvent) -> tuple[int, AsyncEvent] | None:
        """An event happened; returns (cid, event) to complete now, or None if queued or masked."""
        key = (event.aet, event.aei)
        if key in self._masked:
            return None
        self._masked.add(key)
        if self._armed:
            return self._armed.popleft(), event
        self._pending.append(event)
        return None

    def log_read(self, lid: int) -> None:
        """The host read log page ``lid`` (without RAE): events pointing at it may fire again."""
        self._masked = {(t, i) for (t, i) in self._masked if _LID_OF.get((t, i), -1) != lid}

    def outstanding(self) -> list[int]:
        return list(self._armed)


_LID_OF = {(2, 0xF0): 0x70, (2, 0x00): 0x04, (2, 0x03): 0x0C}
