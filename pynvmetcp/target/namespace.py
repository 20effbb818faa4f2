"""Namespaces and the storage behind them (memory, regular file, block device).

A backend moves bytes at byte offsets and knows nothing of NVMe; ``Namespace`` adds what a host sees
(block size, identifiers, ANA group, write protection, per-host visibility) and the counters the
SMART log reports. The I/O path copies as little as Python allows: a memory namespace hands out
``memoryview`` slices of its mapping for reads, a file namespace reads with ``preadv`` straight into
the buffer that is sent and writes the received buffer with ``pwritev``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import mmap
import os
import re
import stat
import struct
import uuid as _uuid
from typing import Protocol

_ZERO_CHUNK = bytes(1 << 20)
_PAGE = mmap.PAGESIZE
_BLKGETSIZE64 = 0x80081272
_BLKZEROOUT = 0x127F
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_ANON = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0x20)
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """'64M', '1G', '4096', '2GiB' → bytes (binary multiples: K = 1024)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (e.g. 64M, 1G, 1048576)")
    return int(m.group(1)) << (10 * " kmgtp".index(m.group(2).lower() or " "))


class Backend(Protocol):
    """Byte storage of a namespace. All offsets/lengths are already bounds-checked."""

    size: int
    #: True when ``flush`` may block long enough that it belongs on a worker thread.
    blocking_flush: bool

    def read(self, offset: int, length: int): ...

    def write(self, offset: int, data, fua: bool = False) -> None: ...

    def write_zeroes(self, offset: int, length: int) -> None: ...

    def flush(self) -> None: ...

    def resize(self, size: int) -> None: ...

    def close(self) -> None: ...


class MemoryBackend:
    """An anonymous mapping: zero pages cost nothing until written, and deallocation
    (``MADV_DONTNEED``) gives pages back, so ``mkfs`` discarding a whole device is instant."""

    blocking_flush = False

    def __init__(self, size: int) -> None:
        self.size = size
        # private, so that MADV_DONTNEED really drops the pages (a shared mapping keeps them)
        self._map = mmap.mmap(-1, max(size, 1), flags=_ANON)
        self._view = memoryview(self._map)

    def read(self, offset: int, length: int) -> memoryview:
        return self._view[offset:offset + length]

    def write(self, offset: int, data, fua: bool = False) -> None:
        self._view[offset:offset + len(data)] = data

    def write_zeroes(self, offset: int, length: int) -> None:
        end = offset + length
        lo = -(-offset // _PAGE) * _PAGE
        hi = end // _PAGE * _PAGE
        if hi - lo >= _PAGE and hasattr(self._map, "madvise"):
            self._zero(offset, lo)
            self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            self._zero(hi, end)
        else:
            self._zero(offset, end)

    def _zero(self, start: int, end: int) -> None:
        while start < end:
            n = min(end - start, len(_ZERO_CHUNK))
            self._view[start:start + n] = _ZERO_CHUNK[:n]
            start += n

    def flush(self) -> None:
        pass

    def resize(self, size: int) -> None:
        # Views handed out for reads in flight keep the old mapping alive; copy instead of mremap.
        new = mmap.mmap(-1, max(size, 1), flags=_ANON)
        keep = min(size, self.size)
        new[:keep] = self._view[:keep]
        self._map, self._view, self.size = new, memoryview(new), size

    def close(self) -> None:
        self._view.release()
        try:
            self._map.close()
        except BufferError:  # a read's view is still queued for sending; GC frees it later
            pass


_libc = None


def _fallocate(fd: int, mode: int, offset: int, length: int) -> bool:
    """fallocate(2) through libc (Python has no punch-hole call); False when unsupported."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                                        ctypes.c_int64]
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    if _libc.fallocate(fd, mode, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


class FileBackend:
    """A regular file or a block device opened with ``os.open``; positional I/O only, so any
    number of queues can use one descriptor without seeking."""

    blocking_flush = True

    def __init__(self, path: str, *, readonly: bool = False, size: int | None = None,
                 create: bool = False) -> None:
        self.path = path
        flags = os.O_RDONLY if readonly else os.O_RDWR
        if create and not readonly:
            flags |= os.O_CREAT
        self.fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            st = os.fstat(self.fd)
            self.is_block = stat.S_ISBLK(st.st_mode)
            if not (self.is_block or stat.S_ISREG(st.st_mode)):
                raise ValueError(f"{path} is neither a regular file nor a block device")
            if self.is_block:
                buf = fcntl.ioctl(self.fd, _BLKGETSIZE64, bytes(8))
                self.size = struct.unpack("<Q", buf)[0]
            else:
                if size is not None and size != st.st_size:
                    if readonly:
                        raise ValueError(f"{path} is read-only and not {size} bytes")
                    os.ftruncate(self.fd, size)
                self.size = os.fstat(self.fd).st_size
        except BaseException:
            os.close(self.fd)
            raise
        self._dsync = getattr(os, "RWF_DSYNC", 0)

    def read(self, offset: int, length: int) -> bytearray:
        buf = bytearray(length)
        view = memoryview(buf)
        done = 0
        while done < length:
            n = os.preadv(self.fd, [view[done:]], offset + done)
            if n == 0:  # beyond the end of a shorter file: reads as zeros
                break
            done += n
        return buf

    def write(self, offset: int, data, fua: bool = False) -> None:
        view = memoryview(data).cast("B")
        flags = self._dsync if fua else 0
        while len(view):
            n = os.pwritev(self.fd, [view], offset, flags) if flags else os.pwrite(
                self.fd, view, offset)
            view = view[n:]
            offset += n
        if fua and not flags:
            os.fdatasync(self.fd)

    def write_zeroes(self, offset: int, length: int) -> None:
        if self.is_block:
            fcntl.ioctl(self.fd, _BLKZEROOUT, struct.pack("<QQ", offset, length))
            return
        if _fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length):
            return
        end = offset + length
        while offset < end:
            n = min(end - offset, len(_ZERO_CHUNK))
            self.write(offset, memoryview(_ZERO_CHUNK)[:n])
            offset += n

    def flush(self) -> None:
        os.fsync(self.fd)

    def resize(self, size: int) -> None:
        if self.is_block:
            raise ValueError("a block device namespace cannot be resized here")
        os.ftruncate(self.fd, size)
        self.size = size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_backend(source: str, *, readonly: bool = False, size: int | None = None) -> Backend:
    """``mem:SIZE`` → memory; anything else is a path (regular file or block device).

    ``size`` creates/extends a regular file to that size (a new file needs it)."""
    if source.startswith("mem:"):
        return MemoryBackend(parse_size(source[4:]))
    if size is None and not os.path.exists(source):
        raise ValueError(f"{source} does not exist (give a size to create it)")
    return FileBackend(source, readonly=readonly, size=size, create=size is not None)


def _derived_uuid(subnqn: str, nsid: int) -> _uuid.UUID:
    """Stable per (subsystem, nsid): two targets serving the same subsystem (multipath) agree."""
    return _uuid.uuid5(_uuid.NAMESPACE_URL, f"nvme:{subnqn}/{nsid}")


class Namespace:
    """What a host addresses by NSID. Mutate it only through its subsystem (which notifies
    the controllers that see it)."""

    def __init__(self, backend: Backend, *, nsid: int = 0, block_size: int = 512,
                 uuid: _uuid.UUID | str | None = None, nguid: bytes | str | None = None,
                 eui64: bytes | str | None = None, ana_group: int = 1, readonly: bool = False,
                 hosts: set[str] | list[str] | None = None, source: str = "") -> None:
        if block_size < 512 or block_size & (block_size - 1):
            raise ValueError(f"block size {block_size} is not a power of two ≥ 512")
        if not 1 <= ana_group <= 0xFFFFFFFE:
            raise ValueError(f"ANA group {ana_group} out of range")
        # A file or device may end in a partial block (it is not addressable, as with nvmet);
        # a memory size is what the user typed, so a partial block there is a typo.
        what = source or "the namespace"
        if backend.size < block_size:
            raise ValueError(f"{what} holds {backend.size} bytes: less than one "
                             f"{block_size}-byte block")
        if source.startswith("mem:") and backend.size % block_size:
            raise ValueError(f"{what}: {backend.size} bytes is not a multiple of the "
                             f"{block_size}-byte block size")
        self.backend = backend
        self.nsid = nsid
        self.block_size = block_size
        self.lba_shift = block_size.bit_length() - 1
        self.uuid = _uuid.UUID(str(uuid)) if uuid is not None else None
        self.nguid = _id_bytes(nguid, 16, "NGUID")
        self.eui64 = _id_bytes(eui64, 8, "EUI-64")
        self.ana_group = ana_group
        self.readonly = readonly
        self.hosts = set(hosts) if hosts is not None else None
        self.source = source
        # SMART counters (data units are 1000 × 512 bytes, rounded up when reported)
        self.bytes_read = 0
        self.bytes_written = 0
        self.read_cmds = 0
        self.write_cmds = 0

    def assign(self, subnqn: str, nsid: int) -> None:
        """Fill in the NSID and any identifiers not given (derived, so stable across restarts)."""
        self.nsid = nsid
        if self.uuid is None:
            self.uuid = _derived_uuid(subnqn, nsid)
        if self.nguid is None:
            self.nguid = hashlib.sha256(f"nguid:{subnqn}/{nsid}".encode()).digest()[:16]

    @property
    def nblocks(self) -> int:
        return self.backend.size >> self.lba_shift

    @property
    def size(self) -> int:
        return self.nblocks << self.lba_shift

    def visible_to(self, hostnqn: str) -> bool:
        return self.hosts is None or hostnqn in self.hosts

    def __repr__(self) -> str:
        return (f"<Namespace {self.nsid} {self.source or type(self.backend).__name__} "
                f"{self.nblocks}×{self.block_size}>")


def _id_bytes(value, size: int, what: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = bytes.fromhex(value.replace("-", "").replace(":", ""))
    if len(value) != size:
        raise ValueError(f"{what} must be {size} bytes")
    return bytes(value)
