"""Floor 2: bytes ↔ PDUs (framer, CRC32C digests, the fast codec for the hot PDUs)."""
from .framer import Framer
from .pdus import PduBase

__all__ = ["Framer", "PduBase"]
