"""pynvmetcp: NVMe over TCP in Python.

    with pynvmetcp.connect("127.0.0.1", 4420, "nqn.2024-01.io.example:disk") as ctrl:
        ns = ctrl.namespace(1)
        ns.write(0, bytes(4096))
"""
from typing import TYPE_CHECKING

from . import host
from .errors import (CommandTimeout, ConnectionLost, NvmeStatusError, NvmeTcpError,
                     ProtocolError, TermReqReceived)
from .host import Controller, connect, discover

if TYPE_CHECKING:  # what type checkers see; at run time the names load on first use
    from .host.aio import AsyncController, aconnect, adiscover

__all__ = ["connect", "discover", "Controller", "aconnect", "adiscover", "AsyncController", "NvmeTcpError", "NvmeStatusError",
           "ProtocolError", "TermReqReceived", "ConnectionLost", "CommandTimeout"]


def __getattr__(name: str):
    """The asyncio host's names, loaded when first used (see ``pynvmetcp.host``)."""
    if name in host.ASYNC_NAMES:
        return getattr(host, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | host.ASYNC_NAMES)
