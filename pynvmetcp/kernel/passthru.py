"""NVMe commands through the kernel's passthrough ioctls, with the userspace host's API.

Why the same API: ``KernelController`` is a ``ControllerApi`` whose driver executes each SQE with
``NVME_IOCTL_ADMIN64_CMD`` on /dev/nvmeN (admin) or ``NVME_IOCTL_IO64_CMD`` on the namespace's block
device (I/O). So identify, log pages, the genctr-checked discovery paging and namespace I/O are
the very procedures of host/procedures.py, and results are the same construct Containers; a
failed command raises the same ``NvmeStatusError``.

The ioctl's return value is the command's status: 0 on success, > 0 the 15-bit NVMe status field
(SCT/SC/CRD/M/DNR, without the phase bit — e.g. 0x4002 for Invalid Field with DNR), < 0 a host
errno. The 64-bit variants return CQE DW0 and DW1 in ``result``; kernels without them (ENOTTY) fall
back to the 32-bit ones (DW0 only).

Passthrough needs the compiled ``pynvmetcp.kernel._nvme`` (native/build_nvme.py).
"""
from __future__ import annotations

import errno
import os
import re
import struct
import time
from typing import Any, Callable

from ..errors import NvmeStatusError
from ..host import procedures as P
from ..host.api import ControllerApi
from ..protocol.events import Completion
from .errors import KernelUnavailable, PassthruError
from .sysfs import Sysfs

_HEAD = struct.Struct("<BBHIII")  # opcode flags cid nsid cdw2 cdw3
_CDW10_15 = struct.Struct("<6I")
NOT_BUILT = ("pynvmetcp.kernel._nvme not built: install with a C compiler and linux headers "
             "(gcc, linux-libc-dev), e.g. `pip install -e .` again")

_native: Any = None
_types: tuple = ()  # (ffi, struct cmd64 *, struct cmd *, uintptr_t, submit functions), see native()


def native():
    """The compiled cffi module (``ffi``, ``lib``), or KernelUnavailable saying what is missing."""
    global _native
    if _native is None:
        try:
            from . import _nvme  # type: ignore[attr-defined]
        except ImportError as exc:
            raise KernelUnavailable(f"{NOT_BUILT} ({exc})") from None
        ffi = _nvme.ffi
        layout = (ffi.sizeof("struct nvme_passthru_cmd64"), ffi.sizeof("struct nvme_passthru_cmd"),
                  ffi.offsetof("struct nvme_passthru_cmd64", "addr"),
                  ffi.offsetof("struct nvme_passthru_cmd64", "result"),
                  ffi.offsetof("struct nvme_passthru_cmd", "result"))
        if layout != (_CMD64.size, _CMD32.size, 24, 72, 68):
            raise KernelUnavailable(f"pynvmetcp.kernel._nvme: unexpected passthrough struct "
                                    f"layout {layout} (the packing here assumes 80/72 bytes)")
        lib = _nvme.lib
        global _types
        _types = (ffi, ffi.typeof("struct nvme_passthru_cmd64 *"),
                  ffi.typeof("struct nvme_passthru_cmd *"), ffi.typeof("uintptr_t"),
                  # indexed by (wide, admin)
                  {(True, True): lib.pynvme_admin64, (True, False): lib.pynvme_io64,
                   (False, True): lib.pynvme_admin, (False, False): lib.pynvme_io})
        _native = _nvme
    return _native


# struct nvme_passthru_cmd64 / nvme_passthru_cmd, packed in one call (cheaper than setting the
# cdata fields one by one); native() checks these sizes against the compiler's.
_CMD64 = struct.Struct("<BBHIIIQQII6IIIQ")
_CMD32 = struct.Struct("<BBHIIIQQII6III")


def passthru(fd: int, sqe: bytes, *, admin: bool, write: Any = None, read_len: int = 0,
             read_into: Any = None, timeout: float | None = None, wide: bool = True,
             qid: int = 0) -> Completion:
    """Execute one 64-byte SQE on ``fd``; returns a Completion like the userspace queues do.

    Data: ``write`` (a buffer sent to the controller), or ``read_into`` / ``read_len`` (received).
    The SQE's CID, PSDT/fuse flags and data pointer are ignored: the kernel owns them (and
    rejects non-zero flags).
    """
    if _native is None:
        native()
    # The cffi types are looked up once (a cdecl string costs a parse-cache lookup per call).
    ffi, t64, t32, uintptr, submit = _types
    opcode, _flags, _cid, nsid, cdw2, cdw3 = _HEAD.unpack_from(sqe, 0)
    buf: Any = None
    reading = False
    if write is not None:
        buf = write
    elif read_into is not None:
        buf, reading = read_into, True
    elif read_len:
        buf, reading = bytearray(read_len), True
    addr = length = 0
    keep = None
    if buf is not None:
        keep = ffi.from_buffer(buf, require_writable=reading)
        addr, length = int(ffi.cast(uintptr, keep)), len(keep)
    timeout_ms = int(timeout * 1000) if timeout else 0
    layout = _CMD64 if wide else _CMD32
    raw = bytearray(layout.size)
    tail = (timeout_ms, 0, 0) if wide else (timeout_ms, 0)
    layout.pack_into(raw, 0, opcode, 0, 0, nsid, cdw2, cdw3, 0, addr, 0, length,
                     *_CDW10_15.unpack_from(sqe, 40), *tail)
    rc = submit[wide, admin](fd, ffi.from_buffer(t64 if wide else t32, raw,
                                                 require_writable=True))
    del keep
    result = layout.unpack_from(raw)[-1]
    dw0, dw1 = result & 0xFFFFFFFF, result >> 32
    if rc < 0:
        raise PassthruError(-rc, f"{'admin' if admin else 'I/O'} passthrough of opcode "
                                 f"{opcode:#04x}")
    if rc > 0:
        raise NvmeStatusError(rc, opcode=opcode, fabrics=opcode == 0x7F, dw0=dw0)
    data = memoryview(buf) if reading and read_into is None else None
    return Completion(0, 0, dw0, dw1, 0, qid, data)


class KernelController(ControllerApi):
    """A controller of the kernel host: admin passthrough on /dev/nvmeN, I/O on its namespaces.

    Creating one opens nothing; the character device is opened on the first command. Closing it
    (or leaving a ``with`` block) closes file descriptors only — the kernel controller stays
    connected until :meth:`disconnect`, because keeping the block device is the point of the
    kernel path.
    """

    def __init__(self, name: str, *, cntlid: int | None = None, already_connected: bool = False,
                 sysfs: Sysfs | None = None, dev_root: str = "/dev",
                 options: str | None = None) -> None:
        if not name.startswith("nvme") or not name[4:].isdigit():
            raise ValueError(f"not a controller name: {name!r}")
        self.name = name
        self.instance = int(name[4:])
        self.cntlid = cntlid if cntlid is not None else 0
        self.already_connected = already_connected
        self.options = options
        self.sysfs = sysfs or Sysfs()
        self.dev_root = dev_root
        self.io_queue_ids = [-1]
        self._fd: int | None = None
        self._ns_fds: dict[int, int] = {}
        self._wide = True
        self.nsid: int | None = None  # set by from_device() for a namespace device

    @classmethod
    def from_device(cls, device: str, *, sysfs: Sysfs | None = None,
                    dev_root: str = "/dev") -> "KernelController":
        """The controller behind ``/dev/nvmeN`` or a namespace device ``/dev/nvmeXnY``.

        Why not just strip ``nY``: with native multipath the X of a namespace device is the
        *subsystem* instance, which need not be any controller's number; the controller is found
        through the namespace's paths in sysfs (a live one preferred). ``nsid`` is set for a
        namespace device.
        """
        sysfs = sysfs or Sysfs()
        name = os.path.basename(device)
        if re.fullmatch(r"nvme\d+", name):
            return cls(name, sysfs=sysfs, dev_root=dev_root)
        ns = sysfs.namespace(name)
        if ns is None:
            raise KernelUnavailable(f"{device}: not an NVMe namespace block device known to sysfs")
        owners = [p.controller for p in ns.paths]
        if not owners:  # no multipath: the disk lives under its controller
            owners = [c.name for c in sysfs.controllers()
                      if any(n.name == name for n in c.namespaces)]
        if not owners:
            raise KernelUnavailable(f"{device}: no controller reaches this namespace")
        live = [o for o in owners if (c := sysfs.controller(o)) is not None and c.state == "live"]
        ctrl = cls((live or owners)[0], sysfs=sysfs, dev_root=dev_root)
        ctrl.nsid = ns.nsid
        return ctrl

    def __repr__(self) -> str:
        extra = ", already connected" if self.already_connected else ""
        return f"<KernelController {self.name} cntlid={self.cntlid}{extra}>"

    @property
    def device(self) -> str:
        return os.path.join(self.dev_root, self.name)

    # ---- drivers for ControllerApi ----
    def _execute(self, cmd: P.Command) -> Completion:
        if _native is None:
            native()  # say the module is missing before any device is opened
        if cmd.queue == 0:
            fd, admin = self.fileno(), True
        else:
            nsid = _HEAD.unpack_from(cmd.sqe, 0)[3]
            fd, admin = self._namespace_fd(nsid), False
        kwargs = dict(admin=admin, write=cmd.write, read_len=cmd.read_len,
                      read_into=cmd.read_into, timeout=cmd.timeout,
                      qid=0 if admin else 1)
        try:
            return passthru(fd, cmd.sqe, wide=self._wide, **kwargs)
        except PassthruError as exc:
            if exc.errno != errno.ENOTTY or not self._wide:
                raise
            self._wide = False  # a kernel older than the 64-bit passthrough ioctls
            return passthru(fd, cmd.sqe, wide=False, **kwargs)

    def _run(self, proc: P.Procedure, post: Callable | None = None) -> Any:
        value = P.run_sync(proc, self._execute, time.sleep)
        return post(value) if post else value

    def _io(self, command: P.Command, post: Callable) -> Any:
        return post(self._execute(command))

    def execute(self, sqe: bytes, *, queue: int = 0, write: Any = None, read_len: int = 0,
                read_into: Any = None, timeout: float | None = None) -> Completion:
        """Any command by its SQE (from host/commands.py); ``queue`` 0 = admin, else I/O."""
        return self._execute(P.Command(sqe, queue=queue, write=write, read_len=read_len,
                                       read_into=read_into, timeout=timeout))

    # ---- file descriptors ----
    def fileno(self) -> int:
        if self._fd is None:
            self._fd = _open(self.device)
        return self._fd

    def block_device(self, nsid: int) -> str:
        """/dev/nvmeXnY of namespace ``nsid`` seen through this controller (the multipath head)."""
        ctrl = self.sysfs.controller(self.name)
        if ctrl is None:
            raise KernelUnavailable(f"{self.name} is not connected")
        for ns in ctrl.namespaces:
            if ns.nsid == nsid:
                return os.path.join(self.dev_root, ns.name)
        raise KernelUnavailable(f"{self.name} has no block device for namespace {nsid} "
                                f"(not attached, or not scanned yet)")

    def _namespace_fd(self, nsid: int) -> int:
        fd = self._ns_fds.get(nsid)
        if fd is None:
            fd = self._ns_fds[nsid] = _open(self.block_device(nsid))
        return fd

    def close(self) -> None:
        """Close the file descriptors (the kernel controller stays connected)."""
        fds, self._ns_fds = list(self._ns_fds.values()), {}
        if self._fd is not None:
            fds.append(self._fd)
            self._fd = None
        for fd in fds:
            os.close(fd)

    def __enter__(self) -> "KernelController":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- state ----
    def info(self):
        """The controller as sysfs shows it now (None once it is gone)."""
        return self.sysfs.controller(self.name)

    def disconnect(self) -> None:
        """Delete the kernel controller (its block devices go away)."""
        self.close()
        self.sysfs.delete_controller(self.name)

    def rescan(self) -> None:
        self.sysfs.rescan(self.name)

    def reset(self) -> None:
        self.sysfs.reset(self.name)

    def smart_log(self):
        """SMART / Health Information log page (LID 0x02), parsed."""
        from ..spec.logpages import SMART_LOG_LEN, SmartLog
        from ..spec.opcodes import LogPageId

        return SmartLog.parse(self.get_log_page(LogPageId.SMART, SMART_LOG_LEN))

    def error_log(self, entries: int = 1):
        """Error Information log entries (LID 0x01), parsed."""
        from ..spec.logpages import ERROR_LOG_ENTRY_LEN, ErrorLogEntry
        from ..spec.opcodes import LogPageId

        raw = self.get_log_page(LogPageId.ERROR, entries * ERROR_LOG_ENTRY_LEN)
        return [ErrorLogEntry.parse(raw[i:i + ERROR_LOG_ENTRY_LEN])
                for i in range(0, len(raw), ERROR_LOG_ENTRY_LEN)]


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KernelUnavailable(f"{path} not found (controller gone, or no devtmpfs/udev)") from None
    except PermissionError:
        raise KernelUnavailable(f"{path}: permission denied (passthrough needs root)") from None
