"""Floor 4: the kernel fallback — let the Linux NVMe/TCP host do the I/O, driven from Python.

Where the kernel has nvme-tcp, a connection made here is an ordinary kernel controller: its
namespaces are block devices (/dev/nvmeXnY) any program can use, and they outlive this process.
The same keyword arguments as the userspace ``pynvmetcp.connect()`` work:

    ok, why = pynvmetcp.kernel.available()
    ctrl = pynvmetcp.kernel.connect("10.0.0.5", 4420, "nqn.2024-01.io.example:disk")
    dev = pynvmetcp.kernel.find_block_device(uuid="…")      # /dev/nvme0n1
    ctrl.identify().mn                                        # passthrough, same Containers
    pynvmetcp.kernel.disconnect(ctrl)

Connect/disconnect/listing need only /dev/nvme-fabrics and sysfs; passthrough commands (and so
discovery) need the compiled cffi module built from native/. What is missing is said, not hidden.
"""
from __future__ import annotations

import os
import platform

from .discovery import discover, discovery_log
from .errors import (AuthenticationRejected, ConnectError, ConnectionRefused, ConnectionReset,
                     ConnectRejected, ConnectTimeout, InvalidOptions, KernelError,
                     KernelUnavailable, PassthruError, Unreachable)
from .fabrics import connect, disconnect
from .options import FABRICS_DEV
from .passthru import KernelController, native
from .sysfs import Controller, Namespace, NamespacePath, Sysfs

__all__ = ["available", "connect", "disconnect", "controllers", "namespaces", "discover",
           "discovery_log", "find_block_device", "find_namespace", "KernelController", "Sysfs",
           "Controller", "Namespace", "NamespacePath", "KernelError", "KernelUnavailable",
           "ConnectError", "InvalidOptions", "ConnectionRefused", "ConnectTimeout",
           "ConnectRejected", "Unreachable", "ConnectionReset", "AuthenticationRejected",
           "PassthruError"]


def available(fabrics_dev: str = FABRICS_DEV, *, passthrough: bool = True) -> tuple[bool, str]:
    """Whether the kernel path can be used here, and if not, the first thing missing.

    ``passthrough=False`` asks only about connect/disconnect/listing, which need no compiled
    module; passthrough commands (identify, log pages, discovery) also need ``_nvme``.
    """
    if not os.path.exists(fabrics_dev):
        return False, (f"nvme-tcp kernel module not loaded: {fabrics_dev} not found "
                       f"(modprobe nvme-tcp; kernel {platform.release()} may lack CONFIG_NVME_TCP)")
    if not os.access(fabrics_dev, os.R_OK | os.W_OK):
        return False, f"{fabrics_dev}: permission denied (the kernel path needs root)"
    if passthrough:
        try:
            native()
        except KernelUnavailable as exc:
            return False, str(exc)
    return True, f"kernel NVMe/TCP host available (Linux {platform.release()})"


def controllers(sysfs: Sysfs | None = None) -> list[Controller]:
    """The kernel's NVMe controllers, with their namespaces (from sysfs)."""
    return (sysfs or Sysfs()).controllers()


def namespaces(sysfs: Sysfs | None = None) -> list[Namespace]:
    """Every NVMe namespace block device (multipath heads, never hidden path devices)."""
    return (sysfs or Sysfs()).namespaces()


def find_namespace(*, sysfs: Sysfs | None = None, **ids) -> Namespace | None:
    """The namespace with these identifiers (uuid, nguid, eui, wwid, nsid, subsysnqn)."""
    return (sysfs or Sysfs()).find_namespace(**ids)


def find_block_device(*, sysfs: Sysfs | None = None, **ids) -> str | None:
    """/dev/nvmeXnY of the namespace with these identifiers, e.g. ``uuid=…`` (None: not found)."""
    return (sysfs or Sysfs()).find_block_device(**ids)
