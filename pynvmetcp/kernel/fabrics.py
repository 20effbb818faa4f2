"""Connect and disconnect kernel NVMe/TCP controllers through /dev/nvme-fabrics and sysfs.

A connect is one write(2) of an option string to a fresh /dev/nvme-fabrics fd; the kernel sets
the whole controller up (ICReq, Fabrics Connect, enable, identify, I/O queues, namespace scan)
before write returns, then a read(2) on the same fd answers ``instance=N,cntlid=M``. Failures come
back as an errno only, so the kernel log lines written during the attempt are collected from
/dev/kmsg and attached to the typed error.

EALREADY means a controller with the same address, subsystem and host NQN exists (unless
``duplicate_connect``): that is a success for a caller that wants the namespace, so it returns
that existing controller, found in sysfs, marked ``already_connected``.
"""
from __future__ import annotations

import errno
import os
import uuid as _uuid
from typing import Callable

from ..host.identity import UUID_NQN_PREFIX, default_identity, validate_nqn
from ..spec.opcodes import NVME_PORT
from .errors import KernelUnavailable, connect_error
from .options import FABRICS_DEV, build_options, parse_reply, read_supported
from .passthru import KernelController
from .sysfs import Sysfs, SysfsError


def identity(hostnqn: str | None = None, hostid: str | _uuid.UUID | None = None
             ) -> tuple[str, str]:
    """The host NQN / host ID to send, chosen as the userspace host chooses them.

    /etc/nvme/hostnqn and /etc/nvme/hostid by default (what nvme-cli sends, so our controllers and
    nvme-cli's are recognised as the same host); a uuid-form host NQN given without host ID brings
    its own UUID as host ID. The kernel pairs them (pitfall 19), so never mix them at random.
    """
    base = default_identity()
    nqn = validate_nqn(hostnqn, "host NQN") if hostnqn else base.hostnqn
    if hostid:
        hid = _uuid.UUID(str(hostid))
    elif hostnqn and hostnqn.startswith(UUID_NQN_PREFIX):
        hid = _uuid.UUID(hostnqn[len(UUID_NQN_PREFIX):])
    else:
        hid = base.hostid
    return nqn, str(hid)


def check_fabrics(path: str = FABRICS_DEV) -> None:
    """KernelUnavailable unless the fabrics device is there and writable."""
    if not os.path.exists(path):
        raise KernelUnavailable(f"nvme-tcp kernel module not loaded: {path} not found "
                                f"(modprobe nvme-tcp; this kernel may lack CONFIG_NVME_TCP)")
    if not os.access(path, os.R_OK | os.W_OK):
        raise KernelUnavailable(f"{path}: permission denied (connecting needs root)")


class _KernelLog:
    """The kernel log lines written from now on (best effort: /dev/kmsg may be unreadable)."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.fd = None

    def read(self, keyword: str = "nvme") -> list[str]:
        lines: list[str] = []
        while self.fd is not None:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten meanwhile: keep reading
                    continue
                break
            if not rec:
                break
            text = rec.decode(errors="replace").split(";", 1)[-1].split("\n", 1)[0]
            if keyword in text:
                lines.append(text.strip())
        return lines

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def connect(traddr: str, trsvcid: int | str = NVME_PORT, subnqn: str = "", *,
            fabrics_dev: str = FABRICS_DEV, sysfs: Sysfs | None = None,
            **kwargs) -> KernelController:
    """Connect the kernel host to a subsystem; returns its controller (/dev/nvmeN).

    Takes the userspace ``connect()``'s keyword arguments (``ConnectParams`` names: hostnqn,
    hostid, nr_io_queues, queue_size, kato, hdr_digest, data_digest, disable_sqflow,
    ctrl_loss_tmo, reconnect_delay; timeout/connect_timeout/hpda are accepted and ignored) plus the
    kernel-only ones (keep_alive_tmo, fast_io_fail_tmo, host_traddr, host_iface, tos,
    duplicate_connect, nr_write_queues, nr_poll_queues, discovery). Unlike the userspace path,
    options not given are not sent: the kernel's defaults apply.

    Already connected (EALREADY) → the existing controller with ``already_connected=True``.
    Other failures → a ConnectError subclass named after the errno, with the kernel's log lines.
    """
    if not subnqn:
        raise ValueError("subnqn is required")
    validate_nqn(subnqn, "subsystem NQN")
    check_fabrics(fabrics_dev)
    sysfs = sysfs or Sysfs()
    hostnqn, hostid = identity(kwargs.pop("hostnqn", None), kwargs.pop("hostid", None))
    text = build_options(traddr, subnqn, trsvcid, hostnqn=hostnqn, hostid=hostid,
                         supported=read_supported(fabrics_dev), **kwargs)
    klog = _KernelLog()
    try:
        fd = os.open(fabrics_dev, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
            reply = parse_reply(os.read(fd, 4096).decode())
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno == errno.EALREADY:
            existing = sysfs.find_controllers(
                transport=kwargs.get("transport", "tcp"), traddr=str(traddr),
                trsvcid=str(trsvcid), subsysnqn=subnqn, hostnqn=hostnqn,
                host_traddr=kwargs.get("host_traddr"), host_iface=kwargs.get("host_iface"))
            if existing:
                c = existing[0]
                return KernelController(c.name, cntlid=c.cntlid, already_connected=True,
                                        sysfs=sysfs, options=text)
        raise connect_error(exc.errno, text, klog.read(),
                            target=f"{traddr}:{trsvcid} {subnqn}") from None
    finally:
        klog.close()
    return KernelController(reply.name, cntlid=reply.cntlid, sysfs=sysfs, options=text)


def disconnect(target: KernelController | str | None = None, *, subnqn: str | None = None,
               traddr: str | None = None, trsvcid: int | str | None = None,
               hostnqn: str | None = None, sysfs: Sysfs | None = None,
               on_refused: Callable[[str, SysfsError], None] | None = None) -> list[str]:
    """Delete controllers: one (a KernelController or a name like ``nvme0``), or every controller
    matching the criteria given (``subnqn`` alone = all paths to that subsystem, as
    ``nvme disconnect -n``; ``hostnqn`` alone = everything one host identity connected).
    Returns the names deleted.

    The first deletion the kernel refuses raises, unless ``on_refused(name, error)`` is given:
    then it is told and the other matches are still deleted. The kernel refuses (EBUSY) a
    controller whose first connect is still under way, and one such path must not keep a
    subsystem's other paths connected."""
    sysfs = sysfs or Sysfs()
    if isinstance(target, KernelController):
        target.disconnect()
        return [target.name]
    if target is not None:
        sysfs.delete_controller(target)
        return [target]
    if subnqn is None and traddr is None and hostnqn is None:
        raise ValueError("give a controller, or subnqn, traddr and/or hostnqn to match")
    names = []
    for c in sysfs.find_controllers(subsysnqn=subnqn, traddr=traddr, trsvcid=trsvcid,
                                    hostnqn=hostnqn):
        try:
            sysfs.delete_controller(c.name)
        except SysfsError as exc:
            if on_refused is None:
                raise
            on_refused(c.name, exc)
        else:
            names.append(c.name)
    return names
