"""Floor 4: the NVMe/TCP initiator (blocking in ``sync``, asyncio in ``aio``)."""
from .aio import AsyncController, aconnect, adiscover
from .sync import Controller, connect, discover

__all__ = ["Controller", "connect", "discover", "AsyncController", "aconnect", "adiscover"]
