"""Floor 4: the NVMe/TCP initiator (blocking in ``sync``, asyncio in ``aio``).

The asyncio names load ``aio`` on first use (PEP 562): importing asyncio (and the ssl module it
brings) was a quarter of the package's import time, paid by every blocking host, CLI command
and driver process that never runs an event loop.
"""
from typing import TYPE_CHECKING

from .sync import Controller, connect, discover

if TYPE_CHECKING:  # what type checkers see; at run time the names load on first use
    from .aio import AsyncController, aconnect, adiscover

__all__ = ["Controller", "connect", "discover", "AsyncController", "aconnect", "adiscover"]
#: The names ``aio`` provides, loaded on first use (also by the package above).
ASYNC_NAMES = frozenset(("AsyncController", "aconnect", "adiscover"))


def __getattr__(name: str):
    if name in ASYNC_NAMES:
        from . import aio
        return getattr(aio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | ASYNC_NAMES)
