"""CRC32C (Castagnoli) for NVMe/TCP header and data digests.

The ``crc32c`` package was measured beside ``google-crc32c`` on these machines (64 KiB: 21 vs
24 GB/s; 72-byte header: 168 vs 173 ns per call, see benchmarks/digest.py): both use the CPU's CRC
instructions, and ``crc32c`` takes any buffer (memoryview slices of receive buffers) and continues a
running value, which the framer needs for data split across receives.
"""
from __future__ import annotations

from crc32c import crc32c as _crc32c

#: ``crc32c(data, value=0) -> int``: CRC32C with init/xorout 0xFFFFFFFF; pass the previous result
#: as ``value`` to continue over more data. The package's function itself, not a wrapper: a
#: Python-level call in between costs ~15 % of a header digest.
crc32c = _crc32c
