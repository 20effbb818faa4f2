"""Errors of the LightOS driver, one type per thing a caller (nova, an operator) acts on.

``LightOSError`` plays the role of os-brick's BrickException: nova treats any exception from a
connector as a failed attach, so the types matter for logs and for our own callers (reconnect
reports them per volume).
"""
from __future__ import annotations


class LightOSError(Exception):
    """Base of every error the driver raises on purpose."""


class DeviceNotFound(LightOSError):
    """The volume's block device did not show up (or is gone)."""

    def __init__(self, uuid: str, why: str = "") -> None:
        self.uuid = uuid
        super().__init__(f"device of LightOS volume {uuid} not found" + (f": {why}" if why else ""))


class EntryFileError(LightOSError):
    """A discovery-client entry file could not be written, read or removed."""


class ExtendIncomplete(LightOSError):
    """The kernel still shows a smaller volume than requested after the bounded wait: nova must
    not resize the guest's disk to a size the host does not have."""

    def __init__(self, uuid: str, size: int, requested: int, waited: float) -> None:
        self.uuid, self.size, self.requested = uuid, size, requested
        super().__init__(f"LightOS volume {uuid}: the kernel shows {size} bytes after {waited:g} s,"
                         f" {requested} requested")


class FlushError(LightOSError):
    """Flushing a block device before detach failed."""


class LibvirtError(LightOSError):
    """libvirt refused an operation (attach, detach, define)."""
