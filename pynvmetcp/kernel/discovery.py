"""Discovery through the kernel host: a discovery controller and Get Log Page 0x70 by ioctl.

Why through the kernel at all, when the userspace host can discover: on a machine where the
kernel owns the connections, a persistent discovery controller kept by the kernel survives this
process, and a host running nvme-cli's tooling sees the same controllers. The log is read by the
shared procedure (header, entries at offset 1024, header again until GENCTR holds still), so the
kernel and userspace paths page the log identically.
"""
from __future__ import annotations

from ..host.procedures import DiscoveryLog
from ..spec.opcodes import DISCOVERY_NQN
from .fabrics import connect, identity
from .passthru import KernelController
from .sysfs import Sysfs

DISCOVERY_PORT = 8009
PERSISTENT_KATO = 30  # seconds, nvme-cli's default for persistent discovery controllers


def discovery_log(ctrl: KernelController) -> DiscoveryLog:
    """Read the discovery log of a connected (kernel) discovery controller."""
    return ctrl.discovery_log()


def discover(traddr: str, trsvcid: int | str = DISCOVERY_PORT, *, persistent: bool = False,
             subnqn: str = DISCOVERY_NQN, sysfs: Sysfs | None = None,
             **kwargs) -> DiscoveryLog:
    """Connect a kernel discovery controller, read its log, and remove it again.

    ``persistent=True`` keeps the controller (with keep-alive, ``kato`` default 30 s) and reuses
    a live one to the same address/host on later calls — as ``nvme discover -p`` does — so the
    kernel keeps receiving discovery-log-change events. A controller that existed before is never
    removed. Other keyword arguments are those of :func:`pynvmetcp.kernel.connect`.
    """
    sysfs = sysfs or Sysfs()
    hostnqn, hostid = identity(kwargs.pop("hostnqn", None), kwargs.pop("hostid", None))
    for userspace in ("nr_io_queues", "queue_size"):  # a discovery controller has no I/O queues
        kwargs.pop(userspace, None)
    ctrl = None
    if persistent:
        kwargs.setdefault("kato", PERSISTENT_KATO)
        live = [c for c in sysfs.find_controllers(transport=kwargs.get("transport", "tcp"),
                                                  traddr=str(traddr), trsvcid=str(trsvcid),
                                                  subsysnqn=subnqn, hostnqn=hostnqn)
                if c.state == "live"]
        if live:
            ctrl = KernelController(live[0].name, cntlid=live[0].cntlid,
                                    already_connected=True, sysfs=sysfs)
    else:
        if kwargs.get("kato") in (None, 0) and kwargs.get("keep_alive_tmo") in (None, 0):
            kwargs.pop("kato", None)  # leave keep-alive to the kernel: off for discovery
    if ctrl is None:
        if subnqn != DISCOVERY_NQN:
            kwargs.setdefault("discovery", True)  # a unique discovery NQN must be marked
        ctrl = connect(traddr, trsvcid, subnqn, hostnqn=hostnqn, hostid=hostid, sysfs=sysfs,
                       **kwargs)
    try:
        return ctrl.discovery_log()
    finally:
        ctrl.close()
        if not persistent and not ctrl.already_connected:
            ctrl.disconnect()
