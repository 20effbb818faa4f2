"""Floor 3: sans-I/O NVMe/TCP queue engines. No sockets, threads or clocks (time is passed in)."""
from .controller import ControllerQueue
from .events import (CommandReceived, Completion, IcComplete, PeerTerminated,
                     ProtocolFailure)
from .host import HostQueue
from .queue import QueueState

__all__ = ["ControllerQueue", "HostQueue", "QueueState", "CommandReceived", "Completion",
           "IcComplete", "PeerTerminated", "ProtocolFailure"]
