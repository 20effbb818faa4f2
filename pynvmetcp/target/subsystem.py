"""An NVM subsystem: its NQN and identity, namespaces, host access list, ANA states, controllers.

Every change a host could notice goes through a method here, because each one has a duty attached:
a namespace added, removed, resized or hidden from a host becomes a Namespace Attribute Changed
event for the controllers that see it; an ANA state change becomes an ANA Change event for the
controllers connected through that port; a host list change alters the discovery log (the
registry's ``on_discovery_change`` hook bumps GENCTR and tells persistent discovery controllers).
"""
from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Callable, Iterable

from ..spec.fabrics import NVME_VS_1_3, NVME_VS_1_4
from ..spec.opcodes import AnaState
from .namespace import Namespace
from .nqn import check_nqn

if TYPE_CHECKING:
    from .controller import Controller
    from .port import Port

log = logging.getLogger(__name__)

MAX_CNTLID = 0xFFEF  # 0xFFF0..0xFFFF are reserved (0xFFFF = dynamic)

ANA_STATE_NAMES = {
    "optimized": AnaState.OPTIMIZED,
    "non-optimized": AnaState.NON_OPTIMIZED,
    "inaccessible": AnaState.INACCESSIBLE,
    "persistent-loss": AnaState.PERSISTENT_LOSS,
    "change": AnaState.CHANGE,
}


def ana_state(value: str | int | AnaState) -> AnaState:
    """'optimized' / 'non_optimized' / 2 / AnaState.X → AnaState."""
    if isinstance(value, str):
        key = value.strip().lower().replace("_", "-")
        if key not in ANA_STATE_NAMES:
            raise ValueError(f"unknown ANA state {value!r} (one of {', '.join(ANA_STATE_NAMES)})")
        return ANA_STATE_NAMES[key]
    return AnaState(value)


class Subsystem:
    """An NVM subsystem; mutate it from the target's event loop thread only.

    ``hosts`` is the access list (empty: any host, unless ``allow_any_host=False``);
    ``ports`` limits the port IDs it is exported on (None: every I/O port);
    ``cntlid_min``/``cntlid_max`` bound the controller IDs it hands out — two targets serving
    the same subsystem NQN to one Linux host (multipath across targets) need disjoint ranges,
    because the kernel refuses a second controller with a CNTLID it already has in that
    subsystem; ``max_nsid`` is NN (and MNAN, ANAGRPMAX) in Identify Controller.
    """

    is_discovery = False

    def __init__(self, nqn: str, *, serial: str | None = None, model: str = "pynvmetcp",
                 firmware: str = "0.1.0", allow_any_host: bool | None = None,
                 hosts: Iterable[str] = (), ports: Iterable[int] | None = None,
                 max_nsid: int = 1024, cntlid_min: int = 1, cntlid_max: int = MAX_CNTLID,
                 max_io_queues: int = 64, version: int = NVME_VS_1_3,
                 ana_groups: Iterable[int] = ()) -> None:
        self.nqn = check_nqn(nqn, "subsystem NQN")
        self.serial = serial or hashlib.sha256(nqn.encode()).hexdigest()[:20]
        if len(self.serial) > 20 or len(model) > 40 or len(firmware) > 8:
            raise ValueError("serial ≤ 20, model ≤ 40 and firmware ≤ 8 characters")
        self.model = model
        self.firmware = firmware
        self.hosts = {check_nqn(h, "host NQN") for h in hosts}
        # No host list means any host, as nvmet's attr_allow_any_host; a list means only those.
        self.allow_any_host = (not self.hosts) if allow_any_host is None else allow_any_host
        self.ports = set(ports) if ports is not None else None
        if not 1 <= max_nsid <= 0xFFFFFFFE:
            raise ValueError("max_nsid out of range")
        if not 1 <= cntlid_min <= cntlid_max <= MAX_CNTLID:
            raise ValueError(f"need 1 ≤ cntlid_min ≤ cntlid_max ≤ {MAX_CNTLID:#x}")
        if version not in (NVME_VS_1_3, NVME_VS_1_4):
            raise ValueError("version must be 1.3 or 1.4")
        if not 1 <= max_io_queues <= 0xFFFF:
            raise ValueError("max_io_queues must be 1..65535")
        self.max_nsid = max_nsid
        self.cntlid_min, self.cntlid_max = cntlid_min, cntlid_max
        self.max_io_queues = max_io_queues
        self.version = version
        self.namespaces: dict[int, Namespace] = {}
        self.controllers: dict[int, Controller] = {}
        self._next_cntlid = cntlid_min
        self._extra_groups = set(ana_groups)
        #: (portid, group) → state once set (absent: optimized); changed in place only, as
        #: the I/O queues' read lanes hold it
        self.ana_states: dict[tuple[int, int], AnaState] = {}
        self.ana_chgcnt = 0
        self._group_chgcnt: dict[int, int] = {}
        #: Set by the registry: called when something in the discovery log changed.
        self.on_discovery_change: Callable[[], None] = lambda: None

    def __repr__(self) -> str:
        return f"<Subsystem {self.nqn} ns={sorted(self.namespaces)}>"

    # ---- hosts ----
    def host_allowed(self, hostnqn: str) -> bool:
        return self.allow_any_host or hostnqn in self.hosts

    def allow_host(self, hostnqn: str) -> None:
        self.hosts.add(check_nqn(hostnqn, "host NQN"))
        self.on_discovery_change()

    def deny_host(self, hostnqn: str) -> None:
        """Refuse new connections from ``hostnqn`` (existing controllers stay, as with nvmet)."""
        self.hosts.discard(hostnqn)
        self.on_discovery_change()

    def set_allow_any_host(self, allow: bool) -> None:
        self.allow_any_host = allow
        self.on_discovery_change()

    def exported_on(self, port: Port) -> bool:
        return not port.discovery_only and (self.ports is None or port.portid in self.ports)

    def export_on(self, ports: Iterable[int] | None) -> None:
        self.ports = set(ports) if ports is not None else None
        self.on_discovery_change()

    # ---- namespaces ----
    def add_namespace(self, ns: Namespace, nsid: int | None = None) -> Namespace:
        """Attach ``ns`` (``nsid`` None/0 picks the lowest free one)."""
        nsid = nsid or ns.nsid or next(i for i in range(1, self.max_nsid + 2)
                                       if i not in self.namespaces)
        if not 1 <= nsid <= self.max_nsid:
            raise ValueError(f"NSID {nsid} out of range 1..{self.max_nsid}")
        if nsid in self.namespaces:
            raise ValueError(f"NSID {nsid} is already used in {self.nqn}")
        if ns.ana_group > self.max_nsid:
            raise ValueError(f"ANA group {ns.ana_group} is above ANAGRPMAX {self.max_nsid}")
        ns.assign(self.nqn, nsid)
        for other in self.namespaces.values():
            if other.uuid == ns.uuid or other.nguid == ns.nguid:
                raise ValueError(f"NSID {nsid} would duplicate the identifiers of NSID "
                                 f"{other.nsid}")
        self.namespaces[nsid] = ns
        log.info("%s: namespace %d added (%s, %d bytes)", self.nqn, nsid, ns.source, ns.size)
        self._ns_changed(ns, ns.hosts)
        return ns

    def remove_namespace(self, nsid: int) -> Namespace:
        ns = self.namespaces.pop(nsid)
        self._ns_changed(ns, ns.hosts)
        ns.backend.close()
        log.info("%s: namespace %d removed", self.nqn, nsid)
        return ns

    def resize_namespace(self, nsid: int, size: int) -> None:
        ns = self.namespaces[nsid]
        if size % ns.block_size:
            raise ValueError(f"size {size} is not a multiple of the {ns.block_size}-byte block")
        ns.backend.resize(size)
        log.info("%s: namespace %d resized to %d bytes", self.nqn, nsid, size)
        self._ns_changed(ns, ns.hosts)

    def set_namespace_hosts(self, nsid: int, hosts: Iterable[str] | None) -> None:
        """Which hosts see namespace ``nsid`` (None: every host the subsystem allows)."""
        ns = self.namespaces[nsid]
        before = ns.hosts
        ns.hosts = {check_nqn(h, "host NQN") for h in hosts} if hosts is not None else None
        if before is None or ns.hosts is None:
            affected = None
        else:
            affected = before ^ ns.hosts
        self._ns_changed(ns, affected)

    def _ns_changed(self, ns: Namespace, hosts: set[str] | None) -> None:
        """Tell controllers of hosts in ``hosts`` (None: all) that ``ns`` changed."""
        for ctrl in list(self.controllers.values()):
            if hosts is None or ctrl.hostnqn in hosts:
                ctrl.namespace_changed(ns.nsid)

    def visible_namespaces(self, hostnqn: str) -> list[Namespace]:
        return [ns for nsid, ns in sorted(self.namespaces.items()) if ns.visible_to(hostnqn)]

    # ---- ANA ----
    def ana_state(self, portid: int, group: int) -> AnaState:
        return self.ana_states.get((portid, group), AnaState.OPTIMIZED)

    def ana_groups(self) -> list[int]:
        return sorted({ns.ana_group for ns in self.namespaces.values()} | self._extra_groups)

    def group_chgcnt(self, group: int) -> int:
        return self._group_chgcnt.get(group, 0)

    def set_ana_state(self, portid: int, group: int, state: str | int | AnaState) -> bool:
        """Change a group's state as seen through port ``portid``; True when it changed."""
        state = ana_state(state)
        if not 1 <= group <= self.max_nsid:  # Linux warns about a GRPID above ANAGRPMAX
            raise ValueError(f"ANA group {group} out of range 1..{self.max_nsid}")
        self._extra_groups.add(group)
        if self.ana_state(portid, group) == state:
            return False
        self.ana_states[(portid, group)] = state
        self.ana_chgcnt += 1
        self._group_chgcnt[group] = self.ana_chgcnt
        log.info("%s: ANA group %d on port %d is now %s", self.nqn, group, portid,
                 state.name.lower())
        for ctrl in list(self.controllers.values()):
            if ctrl.port.portid == portid:
                ctrl.ana_changed()
        return True

    # ---- controllers ----
    def alloc_cntlid(self) -> int | None:
        """The next free controller ID in [cntlid_min, cntlid_max], cycling; None when full."""
        span = self.cntlid_max - self.cntlid_min + 1
        for _ in range(span):
            cntlid = self._next_cntlid
            self._next_cntlid = cntlid + 1 if cntlid < self.cntlid_max else self.cntlid_min
            if cntlid not in self.controllers:
                return cntlid
        return None

    def close(self) -> None:
        for ns in self.namespaces.values():
            ns.backend.close()
