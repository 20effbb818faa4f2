"""The kernel NVMe host as sysfs shows it: controllers, namespaces, multipath paths.

Why a model with the root as a parameter: everything here is plain files and symlinks, so the
tests run on a tree recorded from a real kernel (tests/kernel/sysfs_tree, made by
scripts/record_sysfs.py) and the code never needs root to be tested.

Layout facts this model relies on (observed on Debian's 6.1 kernel):

* ``class/nvme/nvmeN`` → the controller directory, with ``address``
  (``traddr=…,trsvcid=…[,host_traddr=…][,host_iface=…][,src_addr=…]``), ``state``, ``subsysnqn``,
  ``hostnqn``, ``hostid``, ``transport``, ``cntlid``, ``kato``, ``ctrl_loss_tmo``…, and the
  write-only ``delete_controller``, ``rescan_controller``, ``reset_controller``.
* With native multipath every namespace has a *head* block device ``nvme<S>n<N>`` (S: the
  subsystem instance) living under ``class/nvme-subsystem/nvme-subsys<S>``, and each controller
  holds one hidden *path* device ``nvme<S>c<C>n<N>`` (C: the controller instance) with
  ``ana_state``. Path devices have no /dev node and must never be handed out as a namespace's
  block device. Without multipath the controller holds the block device ``nvme<C>n<N>`` itself.
* Namespace attributes (``nsid``, ``uuid``, ``nguid``, ``eui``, ``wwid``, ``size`` in 512-byte
  sectors) exist on both kinds; ``uuid``/``nguid``/``eui`` only when the namespace reports one.
"""
from __future__ import annotations

import os
import re
import uuid as _uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NvmeTcpError
from .options import parse_address

_CTRL = re.compile(r"^nvme(\d+)$")
_PATH_DEV = re.compile(r"^nvme(\d+)c(\d+)n(\d+)$")
_DISK = re.compile(r"^nvme(\d+)n(\d+)$")
SECTOR = 512


@dataclass(frozen=True)
class NamespacePath:
    """One controller's hidden path device to a multipath namespace."""

    name: str  # nvme0c1n1
    controller: str  # nvme1
    ana_state: str | None = None


@dataclass(frozen=True)
class Namespace:
    """A namespace's block device (the multipath head when multipath is on)."""

    name: str  # nvme0n1: the block device to open, /dev/<name>
    nsid: int
    size: int  # 512-byte sectors, as sysfs counts
    uuid: str | None = None
    nguid: str | None = None
    eui: str | None = None
    wwid: str | None = None
    paths: tuple[NamespacePath, ...] = ()
    dev_root: str = "/dev"

    @property
    def size_bytes(self) -> int:
        return self.size * SECTOR

    @property
    def device(self) -> str:
        return os.path.join(self.dev_root, self.name)


@dataclass(frozen=True)
class Controller:
    """One kernel NVMe controller (fabrics or PCIe) and the namespaces reachable through it."""

    name: str  # nvme0; its character device is /dev/<name>
    instance: int
    transport: str | None
    address: dict[str, str]
    state: str | None
    subsysnqn: str | None
    hostnqn: str | None
    hostid: str | None
    cntlid: int | None
    subsystem: str | None = None  # nvme-subsys0
    kato: int | None = None
    namespaces: tuple[Namespace, ...] = ()
    attrs: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    dev_root: str = "/dev"

    @property
    def traddr(self) -> str | None:
        return self.address.get("traddr")

    @property
    def trsvcid(self) -> str | None:
        return self.address.get("trsvcid")

    @property
    def device(self) -> str:
        return os.path.join(self.dev_root, self.name)

    @property
    def is_discovery(self) -> bool:
        from ..spec.opcodes import DISCOVERY_NQN

        return self.subsysnqn == DISCOVERY_NQN or self.attrs.get("cntrltype") == "discovery"


class SysfsError(NvmeTcpError):
    """A sysfs control file could not be written (controller gone, no permission…)."""


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _norm_id(value: str | _uuid.UUID | bytes) -> str:
    """UUIDs and NGUIDs compare as 32 lowercase hex digits (sysfs writes them with dashes)."""
    if isinstance(value, bytes):
        return value.hex()
    return str(value).strip().lower().replace("-", "")


class Sysfs:
    """Read (and poke) the kernel NVMe host through sysfs under ``root``."""

    CTRL_ATTRS = ("transport", "address", "state", "subsysnqn", "hostnqn", "hostid", "cntlid",
                  "kato", "ctrl_loss_tmo", "reconnect_delay", "fast_io_fail_tmo", "model",
                  "serial", "firmware_rev", "cntrltype", "dctype", "queue_count", "sqsize")

    def __init__(self, root: str | os.PathLike = "/sys", dev_root: str = "/dev") -> None:
        self.root = Path(root)
        self.dev_root = dev_root

    # ---- reading ----
    def controller_names(self) -> list[str]:
        d = self.root / "class" / "nvme"
        try:
            names = [n for n in os.listdir(d) if _CTRL.match(n)]
        except FileNotFoundError:
            return []
        return sorted(names, key=lambda n: int(n[4:]))

    def controllers(self) -> list[Controller]:
        """Every controller the kernel knows (those that vanish while being read are skipped)."""
        out = []
        for name in self.controller_names():
            ctrl = self.controller(name)
            if ctrl is not None:
                out.append(ctrl)
        return out

    def controller(self, name: str) -> Controller | None:
        d = self.root / "class" / "nvme" / name
        if not d.exists():
            return None
        attrs = {a: v for a in self.CTRL_ATTRS if (v := _read(d / a)) is not None}
        namespaces = []
        try:
            entries = sorted(os.listdir(d))
        except OSError:
            return None
        for entry in entries:
            ns = self._namespace_of(name, entry)
            if ns is not None:
                namespaces.append(ns)
        namespaces.sort(key=lambda ns: ns.nsid)
        return Controller(
            name=name, instance=int(name[4:]), transport=attrs.get("transport"),
            address=parse_address(attrs.get("address", "")), state=attrs.get("state"),
            subsysnqn=attrs.get("subsysnqn"), hostnqn=attrs.get("hostnqn"),
            hostid=attrs.get("hostid"), cntlid=_int(attrs.get("cntlid")),
            subsystem=self._subsystem_of(name), kato=_int(attrs.get("kato")),
            namespaces=tuple(namespaces), attrs=attrs, dev_root=self.dev_root)

    def _subsystem_of(self, ctrl: str) -> str | None:
        d = self.root / "class" / "nvme-subsystem"
        try:
            subsystems = os.listdir(d)
        except FileNotFoundError:
            return None
        for s in sorted(subsystems):
            if os.path.lexists(d / s / ctrl):
                return s
        return None

    def _namespace_of(self, ctrl: str, entry: str) -> Namespace | None:
        """The namespace behind a controller directory entry, as its *exposed* block device."""
        m = _PATH_DEV.match(entry)
        if m:
            head = f"nvme{m.group(1)}n{m.group(3)}"
            return self.namespace(head)
        if _DISK.match(entry) and (self.root / "class" / "nvme" / ctrl / entry / "nsid").exists():
            return self.namespace(entry)
        return None

    def namespace(self, name: str) -> Namespace | None:
        """A namespace block device by name (``nvme0n1``); path devices are refused (None)."""
        if not _DISK.match(name):
            return None
        d = self.root / "class" / "block" / name
        nsid = _int(_read(d / "nsid"))
        if nsid is None:
            return None
        return Namespace(name=name, nsid=nsid, size=_int(_read(d / "size")) or 0,
                         uuid=_read(d / "uuid"), nguid=_read(d / "nguid"), eui=_read(d / "eui"),
                         wwid=_read(d / "wwid"), paths=tuple(self.paths_of(name)),
                         dev_root=self.dev_root)

    def paths_of(self, head: str) -> list[NamespacePath]:
        """The hidden path devices ``nvme<S>c<C>n<N>`` of head ``nvme<S>n<N>``."""
        m = _DISK.match(head)
        if not m:
            return []
        s, n = m.groups()
        d = self.root / "class" / "block"
        try:
            entries = os.listdir(d)
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            p = _PATH_DEV.match(entry)
            if p and p.group(1) == s and p.group(3) == n:
                out.append(NamespacePath(entry, f"nvme{p.group(2)}", _read(d / entry / "ana_state")))
        return sorted(out, key=lambda p: int(_PATH_DEV.match(p.name).group(2)))

    def namespaces(self) -> list[Namespace]:
        """Every namespace block device (heads, never hidden paths), each listed once."""
        seen: dict[str, Namespace] = {}
        for ctrl in self.controllers():
            for ns in ctrl.namespaces:
                seen.setdefault(ns.name, ns)
        return sorted(seen.values(), key=lambda ns: [int(x) for x in _DISK.match(ns.name).groups()])

    def find_namespace(self, *, uuid: str | _uuid.UUID | None = None,
                       nguid: str | bytes | None = None, eui: str | bytes | None = None,
                       wwid: str | None = None, nsid: int | None = None,
                       subsysnqn: str | None = None) -> Namespace | None:
        """The namespace matching every identifier given (None when there is none)."""
        if uuid is None and nguid is None and eui is None and wwid is None and nsid is None:
            raise ValueError("give uuid, nguid, eui, wwid or nsid")
        for ctrl in self.controllers():
            if subsysnqn is not None and ctrl.subsysnqn != subsysnqn:
                continue
            for ns in ctrl.namespaces:
                if uuid is not None and (not ns.uuid or _norm_id(ns.uuid) != _norm_id(uuid)):
                    continue
                if nguid is not None and (not ns.nguid or _norm_id(ns.nguid) != _norm_id(nguid)):
                    continue
                if eui is not None and (not ns.eui or _norm_id(ns.eui) != _norm_id(eui)):
                    continue
                if wwid is not None and ns.wwid != wwid:
                    continue
                if nsid is not None and ns.nsid != nsid:
                    continue
                return ns
        return None

    def find_block_device(self, **ids) -> str | None:
        """``/dev/nvmeXnY`` of the namespace with these identifiers (see ``find_namespace``)."""
        ns = self.find_namespace(**ids)
        return ns.device if ns else None

    def find_controllers(self, *, traddr: str | None = None, trsvcid: str | int | None = None,
                         subsysnqn: str | None = None, hostnqn: str | None = None,
                         transport: str | None = None, host_traddr: str | None = None,
                         host_iface: str | None = None) -> list[Controller]:
        """Controllers matching every criterion given (the way the kernel spots a duplicate)."""
        out = []
        for ctrl in self.controllers():
            a = ctrl.address
            if transport is not None and ctrl.transport != transport:
                continue
            if traddr is not None and a.get("traddr") != traddr:
                continue
            if trsvcid is not None and a.get("trsvcid") != str(trsvcid):
                continue
            if subsysnqn is not None and ctrl.subsysnqn != subsysnqn:
                continue
            if hostnqn is not None and ctrl.hostnqn != hostnqn:
                continue
            if host_traddr is not None and a.get("host_traddr") != host_traddr:
                continue
            if host_iface is not None and a.get("host_iface") != host_iface:
                continue
            out.append(ctrl)
        return out

    # ---- acting ----
    def _poke(self, ctrl: str, attr: str, value: str = "1") -> None:
        if not _CTRL.match(ctrl):
            raise ValueError(f"not a controller name: {ctrl!r}")
        path = self.root / "class" / "nvme" / ctrl / attr
        try:
            with open(path, "w") as f:
                f.write(value)
        except FileNotFoundError:
            raise SysfsError(f"{ctrl}: no such controller ({path} missing)") from None
        except OSError as exc:
            raise SysfsError(f"{ctrl}: writing {attr} failed: {exc.strerror}") from exc

    def delete_controller(self, ctrl: str) -> None:
        """Disconnect: the kernel tears the controller down before the write returns."""
        self._poke(ctrl, "delete_controller")

    def rescan(self, ctrl: str) -> None:
        """Re-read the namespace list (after namespaces were added or resized on the target)."""
        self._poke(ctrl, "rescan_controller")

    def reset(self, ctrl: str) -> None:
        """Reset the controller (reconnects every queue; I/O is retried)."""
        self._poke(ctrl, "reset_controller")
