"""This host's NVMe identity and addresses, as cinder's LightOS driver needs them.

Host NQN and host ID come from /etc/nvme (what nvme-cli and the kernel use). When the host NQN
file is missing it is created, in the uuid form, paired with /etc/nvme/hostid: the kernel
remembers the first host ID it sees with a host NQN and refuses any other pairing afterwards, so
the two files must always agree from the first connect on.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import logging
import socket
import uuid as _uuid
from pathlib import Path

from .atomic import write_atomic
from .paths import Paths

log = logging.getLogger(__name__)
UUID_NQN_PREFIX = "nqn.2014-08.org.nvmexpress:uuid:"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def host_nqn(paths: Paths = Paths(), *, create: bool = True) -> str | None:
    """/etc/nvme/hostnqn; created (with a matching hostid) when missing and ``create``."""
    nqn = _read(paths.hostnqn_file)
    if nqn or not create:
        return nqn
    hostid = _read(paths.hostid_file)
    try:
        hid = _uuid.UUID(hostid) if hostid else _uuid.uuid4()
    except ValueError:
        hid = _uuid.uuid4()
    nqn = UUID_NQN_PREFIX + str(hid)
    try:
        if not hostid:
            write_atomic(paths.hostid_file, str(hid) + "\n")
        write_atomic(paths.hostnqn_file, nqn + "\n")
    except OSError as exc:
        log.warning("cannot create %s: %s", paths.hostnqn_file, exc)
        return None
    log.info("created host NQN %s", nqn)
    return nqn


def host_id(paths: Paths = Paths()) -> str | None:
    """/etc/nvme/hostid, else the UUID of a uuid-form host NQN (what the kernel would pair)."""
    hid = _read(paths.hostid_file)
    if hid:
        return hid
    nqn = _read(paths.hostnqn_file)
    if nqn and nqn.startswith(UUID_NQN_PREFIX):
        return nqn[len(UUID_NQN_PREFIX):]
    return None


def system_uuid(paths: Paths = Paths()) -> str | None:
    """The DMI product UUID (os-brick's nvmeof connector reports it as ``uuid``)."""
    return _read(paths.sys / "class" / "dmi" / "id" / "product_uuid")


# ---- addresses ----
class _SockAddr(ctypes.Structure):
    _fields_ = [("sa_family", ctypes.c_ushort), ("sa_data", ctypes.c_ubyte * 14)]


class _SockAddrIn(ctypes.Structure):
    _fields_ = [("sin_family", ctypes.c_ushort), ("sin_port", ctypes.c_uint16),
                ("sin_addr", ctypes.c_ubyte * 4)]


class _SockAddrIn6(ctypes.Structure):
    _fields_ = [("sin6_family", ctypes.c_ushort), ("sin6_port", ctypes.c_uint16),
                ("sin6_flowinfo", ctypes.c_uint32), ("sin6_addr", ctypes.c_ubyte * 16),
                ("sin6_scope_id", ctypes.c_uint32)]


class _IfAddrs(ctypes.Structure):
    pass


_IfAddrs._fields_ = [("ifa_next", ctypes.POINTER(_IfAddrs)), ("ifa_name", ctypes.c_char_p),
                     ("ifa_flags", ctypes.c_uint), ("ifa_addr", ctypes.POINTER(_SockAddr)),
                     ("ifa_netmask", ctypes.POINTER(_SockAddr)),
                     ("ifa_ifu", ctypes.POINTER(_SockAddr)), ("ifa_data", ctypes.c_void_p)]


def interface_addresses() -> list[tuple[str, str]]:
    """(interface, address) for every IPv4/IPv6 address of this host (getifaddrs(3))."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    head = ctypes.POINTER(_IfAddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        raise OSError(ctypes.get_errno(), "getifaddrs failed")
    out: list[tuple[str, str]] = []
    try:
        p = head
        while p:
            ifa = p.contents
            if ifa.ifa_addr:
                fam = ifa.ifa_addr.contents.sa_family
                name = ifa.ifa_name.decode()
                if fam == socket.AF_INET:
                    sin = ctypes.cast(ifa.ifa_addr, ctypes.POINTER(_SockAddrIn)).contents
                    out.append((name, socket.inet_ntop(socket.AF_INET, bytes(sin.sin_addr))))
                elif fam == socket.AF_INET6:
                    sin6 = ctypes.cast(ifa.ifa_addr, ctypes.POINTER(_SockAddrIn6)).contents
                    addr = socket.inet_ntop(socket.AF_INET6, bytes(sin6.sin6_addr))
                    if sin6.sin6_scope_id:
                        addr += f"%{name}"
                    out.append((name, addr))
            p = ifa.ifa_next
    finally:
        libc.freeifaddrs(head)
    return out


def host_ips(addresses: list[tuple[str, str]] | None = None) -> list[str]:
    """Every address but the loopback interface's, IPv6 zone suffix (``%eth0``) stripped,
    each once, in interface order (cinder adds them to the volume's access list)."""
    if addresses is None:
        try:
            addresses = interface_addresses()
        except OSError as exc:
            log.warning("cannot list interface addresses: %s", exc)
            addresses = []
    out: list[str] = []
    for ifname, addr in addresses:
        if ifname == "lo":
            continue
        addr = addr.split("%", 1)[0]
        try:
            if ipaddress.ip_address(addr).is_loopback:
                continue
        except ValueError:
            continue
        if addr not in out:
            out.append(addr)
    return out
