"""CRC32C (Castagnoli) for NVMe/TCP header and data digests.

The ``crc32c`` package was measured beside ``google-crc32c`` on these machines (64 KiB: 21 vs
24 GB/s; 72-byte header: 168 vs 173 ns per call, see benchmarks/digest.py): both use the CPU's CRC
instructions, and ``crc32c`` takes any buffer (memoryview slices of receive buffers) and continues a
running value, which the framer needs for data split across receives.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from typing import Callable


def _extension() -> Callable:
    """The ``crc32c`` package's compiled function, loaded from its extension module without
    running the package's ``__init__``. That looks up the package's own version through
    importlib.metadata: 40–60 ms of a ~300 ms ``import pynvmetcp`` here, and seconds per process
    in the test VM's emulated guest, where nothing else imports importlib.metadata. The
    extension imports nothing itself; where it is loaded already, that one is used, and where
    the package is laid out otherwise (or cannot be looked up), the usual import."""
    name = "crc32c._crc32c"
    if name in sys.modules:
        return sys.modules[name].crc32c
    try:
        spec = importlib.util.find_spec("crc32c")  # finds the package, does not import it
    except (ImportError, ValueError):
        spec = None
    for where in (spec and spec.submodule_search_locations) or ():
        ext = importlib.machinery.FileFinder(where, (
            importlib.machinery.ExtensionFileLoader,
            importlib.machinery.EXTENSION_SUFFIXES)).find_spec(name)
        if ext is not None:
            module = importlib.util.module_from_spec(ext)
            ext.loader.exec_module(module)
            return sys.modules.setdefault(name, module).crc32c
    from crc32c import crc32c as packaged
    return packaged


#: ``crc32c(data, value=0) -> int``: CRC32C with init/xorout 0xFFFFFFFF; pass the previous result
#: as ``value`` to continue over more data. The package's function itself, not a wrapper: a
#: Python-level call in between costs ~15 % of a header digest.
crc32c = _extension()
