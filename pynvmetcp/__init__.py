"""pynvmetcp: NVMe over TCP in Python.

    with pynvmetcp.connect("127.0.0.1", 4420, "nqn.2024-01.io.example:disk") as ctrl:
        ns = ctrl.namespace(1)
        ns.write(0, bytes(4096))
"""
from .errors import (CommandTimeout, ConnectionLost, NvmeStatusError, NvmeTcpError,
                     ProtocolError, TermReqReceived)
from .host import AsyncController, Controller, aconnect, adiscover, connect, discover

__all__ = ["connect", "discover", "Controller", "aconnect", "adiscover", "AsyncController", "NvmeTcpError", "NvmeStatusError",
           "ProtocolError", "TermReqReceived", "ConnectionLost", "CommandTimeout"]
