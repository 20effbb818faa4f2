"""libvirt through libvirt-python: finding instances, reading and changing their block disks.

Why a module of its own: attach/detach must work on a real libvirtd (attachDeviceFlags, live and
persistent) and on libvirt's test driver (``test:///default`` or ``test:///path/node.xml``), which
has no hotplug; there the persistent definition is edited and redefined instead — the same
result for a stopped domain, which is what the tests and the reconnect check rely on.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from .errors import LibvirtError

log = logging.getLogger(__name__)


def libvirt_module():
    try:
        import libvirt  # type: ignore
    except ImportError as exc:  # pragma: no cover - the driver extra installs it
        raise LibvirtError("libvirt-python is not installed (pip install '.[driver]')") from exc
    if not getattr(libvirt, "_lightos_quiet", False):
        libvirt.registerErrorHandler(lambda ctx, err: None, None)  # errors arrive as exceptions
        libvirt._lightos_quiet = True
    return libvirt


def open_connection(uri: str | None = None):
    libvirt = libvirt_module()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot connect to libvirt at {uri or 'default URI'}: {exc}") from exc


def resolve_connection(host: Any):
    """A virConnect from nova's Host (``get_connection()``), a virConnect, or a URI."""
    if host is None or isinstance(host, str):
        return open_connection(host)
    if hasattr(host, "get_connection"):
        return host.get_connection()
    return host


@dataclass(frozen=True)
class BlockDisk:
    target_dev: str
    source_dev: str
    serial: str


def find_domain(conn: Any, instance_uuid: str = "", name: str = ""):
    libvirt = libvirt_module()
    for lookup, key in ((conn.lookupByUUIDString, instance_uuid), (conn.lookupByName, name)):
        if key:
            try:
                return lookup(key)
            except libvirt.libvirtError:
                continue
    return None


def block_disks(xml: str) -> list[BlockDisk]:
    """Every ``<disk type='block'>`` of a domain XML (source dev, target dev, serial)."""
    out = []
    for disk in ET.fromstring(xml).findall("./devices/disk"):
        if disk.get("type") != "block":
            continue
        src = disk.find("source")
        tgt = disk.find("target")
        ser = disk.find("serial")
        out.append(BlockDisk(target_dev=tgt.get("dev", "") if tgt is not None else "",
                             source_dev=src.get("dev", "") if src is not None else "",
                             serial=(ser.text or "").strip() if ser is not None else ""))
    return out


def domain_block_disks(dom: Any) -> list[BlockDisk]:
    libvirt = libvirt_module()
    return block_disks(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def _no_support(exc: Exception) -> bool:
    libvirt = libvirt_module()
    return (isinstance(exc, libvirt.libvirtError)
            and exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT)


def attach_disk(conn: Any, dom: Any, disk_xml: str) -> str:
    """Attach to the persistent definition and, when running, live. Returns 'live+config' or
    'config' (the test driver, which has no hotplug)."""
    libvirt = libvirt_module()
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    try:
        dom.attachDeviceFlags(disk_xml, flags)
        return "live+config" if flags & libvirt.VIR_DOMAIN_AFFECT_LIVE else "config"
    except libvirt.libvirtError as exc:
        if not _no_support(exc):
            raise LibvirtError(f"attaching disk to {dom.name()} failed: {exc}") from exc
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    new = ET.fromstring(disk_xml)
    tgt = new.find("target")
    devs = root.find("devices")
    for disk in devs.findall("disk"):
        t = disk.find("target")
        if t is not None and tgt is not None and t.get("dev") == tgt.get("dev"):
            raise LibvirtError(f"{dom.name()} already has a disk {tgt.get('dev')}")
    devs.append(new)
    _define(conn, root)
    return "config"


def detach_disk(conn: Any, dom: Any, target_dev: str = "", source_dev: str = "",
                serial: str = "") -> bool:
    """Detach the block disk with this target device, source device or serial; False when it
    is not there."""
    libvirt = libvirt_module()
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    devs = root.find("devices")
    match = None
    for disk in devs.findall("disk"):
        t, s = disk.find("target"), disk.find("source")
        ser = (disk.findtext("serial") or "").strip()
        if (target_dev and t is not None and t.get("dev") == target_dev) or (
                source_dev and s is not None and s.get("dev") == source_dev) or (
                serial and ser == serial):
            match = disk
            break
    if match is None:
        return False
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    try:
        dom.detachDeviceFlags(ET.tostring(match, encoding="unicode"), flags)
        return True
    except libvirt.libvirtError as exc:
        if not _no_support(exc):
            raise LibvirtError(f"detaching {target_dev or source_dev} from {dom.name()} "
                               f"failed: {exc}") from exc
    devs.remove(match)
    _define(conn, root)
    return True


def replace_disk_source(conn: Any, dom: Any, old_dev: str, new_dev: str) -> bool:
    """Point the persistent definition's block disk at a new /dev path (after a reboot the
    kernel may have numbered the namespace differently)."""
    libvirt = libvirt_module()
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    changed = False
    for disk in root.findall("./devices/disk"):
        s = disk.find("source")
        if disk.get("type") == "block" and s is not None and s.get("dev") == old_dev:
            s.set("dev", new_dev)
            changed = True
    if changed:
        _define(conn, root)
    return changed


def _define(conn: Any, root: ET.Element) -> None:
    libvirt = libvirt_module()
    try:
        conn.defineXML(ET.tostring(root, encoding="unicode"))
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"redefining {root.findtext('name')} failed: {exc}") from exc
