"""Small construct building blocks reused by every wire structure.

Reserved fields keep their bytes (rather than construct's ``Padding``, which discards them) so that a
PDU taken from the wire re-encodes byte-identical, which the capture tests rely on, and a hostile
peer's non-zero reserved bytes stay visible to whoever inspects them.
"""
from __future__ import annotations

import uuid as _uuid

from construct import Adapter, Bytes, BytesInteger, ByteSwapped, BitStruct, Default


def Reserved(size: int):
    """Reserved bytes: zero when built, kept as read when parsed."""
    return Default(Bytes(size), bytes(size))


def U128():
    """A 16-byte little-endian counter (the SMART log's data-unit and power-on counters)."""
    return BytesInteger(16, swapped=True)


def LEBits(*fields):
    """A little-endian dword (or word/qword) split into bit fields, listed MSB first.

    NVMe documents its bit fields LSB-first inside little-endian integers; construct's BitStruct reads
    bits MSB-first from a byte stream, so the integer is byte-swapped before the bits are read.
    """
    return ByteSwapped(BitStruct(*fields))


class _PaddedText(Adapter):
    """Fixed-size ASCII/UTF-8 text, trailing NULs and spaces dropped when read, padded when built."""

    def __init__(self, size: int, pad: bytes, encoding: str = "utf-8") -> None:
        super().__init__(Bytes(size))
        self._size = size
        self._pad = pad
        self._encoding = encoding

    def _decode(self, obj: bytes, context, path) -> str:
        return bytes(obj).split(b"\0", 1)[0].rstrip(b" ").decode(self._encoding, "replace")

    def _encode(self, obj: str, context, path) -> bytes:
        raw = obj.encode(self._encoding)
        if len(raw) > self._size:
            raise ValueError(f"{obj!r} is longer than {self._size} bytes")
        return raw.ljust(self._size, self._pad)


def NulPadded(size: int):
    """Text NUL-padded to ``size`` bytes (NQNs, serial numbers are space padded: see SpacePadded)."""
    return _PaddedText(size, b"\0")


def SpacePadded(size: int):
    """Text space-padded to ``size`` bytes (SN/MN/FR, discovery TRSVCID/TRADDR as nvmet writes them)."""
    return _PaddedText(size, b" ", "ascii")


class _Uuid(Adapter):
    def _decode(self, obj: bytes, context, path) -> _uuid.UUID:
        return _uuid.UUID(bytes=bytes(obj))

    def _encode(self, obj, context, path) -> bytes:
        return (obj if isinstance(obj, _uuid.UUID) else _uuid.UUID(str(obj))).bytes


def Uuid():
    """A 16-byte UUID in network order (host id, namespace UUID), as uuid.UUID."""
    return _Uuid(Bytes(16))
