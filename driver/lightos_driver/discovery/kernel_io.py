"""I/O controllers through the kernel (pynvmetcp.kernel): the block devices libvirt uses.

The kernel must own the I/O path (the namespaces become /dev/nvmeXnY for QEMU, native multipath
joins the paths of all storage nodes into one device, and the controllers survive this service).
The service only says which controllers should exist; the kernel reconnects them on its own.

Host ID: the kernel pairs a host NQN with the first host ID it sees and refuses any other
pairing (EINVAL), so the host ID is taken from a controller the kernel already has for that host
NQN before anything else.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..host import UUID_NQN_PREFIX, _read
from ..paths import Paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IoTarget:
    traddr: str
    trsvcid: int
    subsysnqn: str
    hostnqn: str
    hostid: str = ""
    ctrl_loss_tmo: int | None = None

    @property
    def key(self) -> tuple[str, int, str, str]:
        return (self.traddr, self.trsvcid, self.subsysnqn, self.hostnqn)


class Disconnected(NamedTuple):
    deleted: list[str]
    left: bool  # a controller may remain: a deletion was refused, or sysfs could not be listed


class KernelIO(Protocol):
    def ensure(self, target: IoTarget) -> str | None: ...

    def disconnect_cluster(self, subsysnqn: str, hostnqn: str) -> Disconnected: ...

    def hostid_for(self, hostnqn: str) -> str | None: ...


def choose_hostid(hostnqn: str, entry_hostid: str, kernel_hostid: str | None,
                  paths: Paths) -> str:
    """The host ID to connect with: the kernel's pairing, the entry's -I, /etc/nvme/hostid
    (when the NQN is this host's), the UUID of a uuid-form NQN, else none (kernel default)."""
    if kernel_hostid:
        if entry_hostid and entry_hostid != kernel_hostid:
            log.warning("host NQN %s is paired with host ID %s in the kernel; ignoring -I %s",
                        hostnqn, kernel_hostid, entry_hostid)
        return kernel_hostid
    if entry_hostid:
        return entry_hostid
    if _read(paths.hostnqn_file) == hostnqn:
        hid = _read(paths.hostid_file)
        if hid:
            return hid
    if hostnqn.startswith(UUID_NQN_PREFIX):
        return hostnqn[len(UUID_NQN_PREFIX):]
    return ""


class PynvmetcpKernelIO:
    """KernelIO over pynvmetcp.kernel and the sysfs under ``paths.sys``."""

    def __init__(self, paths: Paths = Paths(), fabrics_dev: str = "/dev/nvme-fabrics",
                 nr_io_queues: int | None = None) -> None:
        from pynvmetcp.kernel import Sysfs

        self.paths = paths
        self.fabrics_dev = fabrics_dev
        self.nr_io_queues = nr_io_queues
        self.sysfs = Sysfs(paths.sys, dev_root=str(paths.dev))

    def _find(self, t: IoTarget):
        return self.sysfs.find_controllers(transport="tcp", traddr=t.traddr,
                                           trsvcid=str(t.trsvcid), subsysnqn=t.subsysnqn,
                                           hostnqn=t.hostnqn)

    def ensure(self, target: IoTarget) -> str | None:
        """Connect unless the kernel already has this controller (in any state: a controller
        that is reconnecting is the kernel's to recover). Returns its name, None on failure."""
        from pynvmetcp import kernel

        existing = self._find(target)
        if existing:
            return existing[0].name
        kw: dict = {"hostnqn": target.hostnqn, "fabrics_dev": self.fabrics_dev,
                    "sysfs": self.sysfs}
        if target.hostid:
            kw["hostid"] = target.hostid
        if target.ctrl_loss_tmo is not None:
            kw["ctrl_loss_tmo"] = target.ctrl_loss_tmo
        if self.nr_io_queues is not None:
            kw["nr_io_queues"] = self.nr_io_queues
        try:
            ctrl = kernel.connect(target.traddr, target.trsvcid, target.subsysnqn, **kw)
        except Exception as exc:  # noqa: BLE001 - reported and retried on the next pass
            log.warning("kernel connect to %s:%s %s failed: %s", target.traddr, target.trsvcid,
                        target.subsysnqn, exc)
            return None
        log.info("connected %s to %s:%s %s", ctrl.name, target.traddr, target.trsvcid,
                 target.subsysnqn)
        return ctrl.name

    def disconnect_cluster(self, subsysnqn: str, hostnqn: str) -> Disconnected:
        """Delete every controller of the subsystem for this host.

        The kernel refuses (EBUSY) to delete a controller whose first connect is still under
        way; that one must not keep the others, and is for the caller to retry (``left``)."""
        from pynvmetcp import kernel

        refused = []

        def tell(name: str, exc: Exception) -> None:
            log.warning("disconnecting %s (%s) failed: %s", name, subsysnqn, exc)
            refused.append(name)

        try:
            names = kernel.disconnect(subnqn=subsysnqn, hostnqn=hostnqn, sysfs=self.sysfs,
                                      on_refused=tell)
        except Exception as exc:  # noqa: BLE001 - reported; the caller retries what is left
            log.warning("listing the controllers of %s failed: %s", subsysnqn, exc)
            return Disconnected([], True)
        if names:
            log.info("disconnected %s (%s): no entry file needs it any more", subsysnqn,
                     ", ".join(names))
        return Disconnected(names, bool(refused))

    def hostid_for(self, hostnqn: str) -> str | None:
        for c in self.sysfs.controllers():
            if c.hostnqn == hostnqn and c.hostid:
                return c.hostid
        return None

