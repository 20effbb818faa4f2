"""The discovery subsystem: the discovery log page, its GENCTR, referrals, and the log-change AEN.

The log is computed per reader, as nvmet does: a host sees only the subsystems it may connect to,
so two hosts read different logs. GENCTR is one counter bumped on every change of anything the log
is made of; a persistent discovery controller gets a Discovery Log Change event only when *its*
host's log actually changed (its last seen entries are kept and compared).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..spec.logpages import (DISC_ENTRY_LEN, DISC_HDR_LEN, EFLAGS_DUPRETINFO, EFLAGS_EPCSD,
                             TREQ_DISABLE_SQFLOW, TREQ_SECURE_NOT_SPECIFIED, DiscoveryLogEntry,
                             DiscoveryLogHeader)
from ..spec.opcodes import DISCOVERY_NQN, NVME_DISC_PORT, SubType, TrType
from .port import adrfam_of, is_wildcard
from .subsystem import MAX_CNTLID

if TYPE_CHECKING:
    from .controller import Controller
    from .registry import Registry

log = logging.getLogger(__name__)

ADMIN_QUEUE_SIZE = 32  # ASQSZ: the admin queue size a host should use (NVME_AQ_DEPTH)
_TSAS_NONE = bytes(256)  # TCP: SECTYPE 0, no TLS


@dataclass(frozen=True)
class Referral:
    """Another discovery service a host should also ask (SUBTYPE 1 entry)."""

    traddr: str
    trsvcid: int = NVME_DISC_PORT
    portid: int = 0
    subnqn: str = DISCOVERY_NQN


# One entry as the tuple the log compares and builds: kept small and hashable.
Entry = tuple  # (subtype, portid, traddr, trsvcid, subnqn, treq, eflags)


class DiscoverySubsystem:
    """The well-known discovery subsystem (nqn.2014-08.org.nvmexpress.discovery)."""

    is_discovery = True
    nqn = DISCOVERY_NQN
    max_io_queues = 0
    max_nsid = 0

    def __init__(self, registry: Registry, *, current_entry: bool = True) -> None:
        self.registry = registry
        self.serial = hashlib.sha256(b"pynvmetcp discovery").hexdigest()[:20]
        self.model = "pynvmetcp discovery"
        self.firmware = "0.1.0"
        self.version = 0x00010300
        self.genctr = 1
        self.referrals: list[Referral] = []
        self.controllers: dict[int, Controller] = {}
        self.namespaces: dict = {}
        #: List the discovery service itself (SUBTYPE 3) at the port the host asked through.
        self.current_entry = current_entry
        self._next_cntlid = 1

    def host_allowed(self, hostnqn: str) -> bool:
        return True  # any host may discover; the log shows it only what it may use

    def alloc_cntlid(self) -> int | None:
        for _ in range(MAX_CNTLID):
            cntlid = self._next_cntlid
            self._next_cntlid = cntlid + 1 if cntlid < MAX_CNTLID else 1
            if cntlid not in self.controllers:
                return cntlid
        return None

    # ---- the log ----
    def entries(self, hostnqn: str, portid: int, local_addr: str) -> list[Entry]:
        """The entries ``hostnqn`` sees when asking through port ``portid``."""
        ports = sorted(self.registry.ports.values(), key=lambda p: p.portid)
        out: list[Entry] = []
        if self.current_entry:
            here = self.registry.ports.get(portid)
            if here is not None:
                out.append((SubType.CURRENT_DISCOVERY, here.portid,
                            _addr(here.traddr, local_addr), here.trsvcid, DISCOVERY_NQN,
                            TREQ_SECURE_NOT_SPECIFIED, EFLAGS_DUPRETINFO | EFLAGS_EPCSD))
        for nqn in sorted(self.registry.subsystems):
            sub = self.registry.subsystems[nqn]
            if not sub.host_allowed(hostnqn):
                continue
            for port in ports:
                if sub.exported_on(port):
                    out.append((SubType.NVME, port.portid, _addr(port.traddr, local_addr),
                                port.trsvcid, nqn,
                                TREQ_SECURE_NOT_SPECIFIED | TREQ_DISABLE_SQFLOW, 0))
        for ref in self.referrals:
            out.append((SubType.REFERRAL, ref.portid, ref.traddr, ref.trsvcid, ref.subnqn,
                        TREQ_SECURE_NOT_SPECIFIED, 0))
        return out

    def log_page(self, entries: list[Entry]) -> bytes:
        """Header + entries, the whole page (the caller slices by LPO/NUMD)."""
        parts = [DiscoveryLogHeader.build({
            "genctr": self.genctr, "numrec": len(entries), "recfmt": 0, "dlpf": 0,
            "rsvd19": 0, "tdlpl": DISC_HDR_LEN + len(entries) * DISC_ENTRY_LEN})]
        for subtype, portid, traddr, trsvcid, subnqn, treq, eflags in entries:
            parts.append(DiscoveryLogEntry.build({
                "trtype": TrType.TCP, "adrfam": adrfam_of(traddr), "subtype": subtype,
                "treq": treq, "portid": portid, "cntlid": 0xFFFF, "asqsz": ADMIN_QUEUE_SIZE,
                "eflags": eflags, "trsvcid": str(trsvcid), "subnqn": subnqn,
                "traddr": traddr, "tsas": _TSAS_NONE}))
        return b"".join(parts)

    # ---- changes ----
    def changed(self) -> None:
        """Something the log is made of changed: bump GENCTR, notify whose log differs."""
        self.genctr += 1
        for ctrl in list(self.controllers.values()):
            ctrl.discovery_log_maybe_changed()

    def add_referral(self, referral: Referral) -> None:
        self.referrals.append(referral)
        self.changed()

    def remove_referral(self, traddr: str, trsvcid: int) -> None:
        self.referrals = [r for r in self.referrals
                          if (r.traddr, r.trsvcid) != (traddr, trsvcid)]
        self.changed()


def _addr(traddr: str, local_addr: str) -> str:
    """A port bound to a wildcard is listed at the address the host reached us through."""
    return local_addr if is_wildcard(traddr) and local_addr else traddr
