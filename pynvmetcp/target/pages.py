"""The data pages a controller returns: Identify (CNS 0/1/2/3, CSI 5/6) and log pages.

Pure functions of the controller's state, built with the construct definitions of spec/ (these are
admin commands, so clarity beats speed). Each Identify Controller field a fabrics host checks is set
on purpose; the comments say which host behaviour depends on it.
"""
from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Iterable

from ..spec.identify import (CMIC_ANA, CMIC_MULTI_CTRL, CMIC_MULTI_PORT, CTRATT_128BIT_HOSTID,
                             IDENTIFY_LEN, LPA_CMD_EFFECTS, LPA_EXTENDED, NIDT_CSI, NIDT_EUI64,
                             NIDT_NGUID, NIDT_UUID, NMIC_SHARED, OAES_ANA_CHANGE,
                             OAES_DISC_LOG_CHANGE, OAES_NS_ATTR, ONCS_COMPARE, ONCS_DSM,
                             ONCS_WRITE_ZEROES, SGLS_OFFSET, SGLS_SUPPORTED,
                             SGLS_TRANSPORT_DATA_BLOCK, IdentifyController, IdentifyNamespace,
                             build_ns_descriptors)
from ..spec.logpages import (ANA_LSP_RGO, CSE_CSUPP, CSE_LBCC, ERROR_LOG_ENTRY_LEN,
                             SMART_LOG_LEN, AnaLogPage, CommandEffectsLog, ErrorLogEntry,
                             SmartLog)
from ..spec.opcodes import CntrlType

if TYPE_CHECKING:
    from .controller import Controller
    from .namespace import Namespace

ONCS_TIMESTAMP = 1 << 6
CTRATT_TBKAS = 1 << 6  # traffic based keep alive: any command restarts the KATO timer
LPA_SMART_PER_NS = 1 << 0
VWC_PRESENT_BROADCAST_FLUSH = 0x07  # present; Flush with NSID FFFFFFFFh supported
DLFEAT_READS_ZEROES_WZ_DEALLOC = 0x09  # deallocated blocks read 0; Write Zeroes may deallocate
ANACAP_ALL_STATES = 0x1F  # optimized, non-optimized, inaccessible, persistent loss, change
ANATT_SECONDS = 10
KAS_100MS = 10  # keep-alive granularity: 1 s
RAB = 6
ELPE = 15  # error log entries kept, 0's based
AERL = 3  # 0's based: four AERs may be outstanding
ACL = 3
SUPPORTED_AENS_IO = OAES_NS_ATTR | OAES_ANA_CHANGE
SUPPORTED_AENS_DISCOVERY = OAES_DISC_LOG_CHANGE
DCTYPE_DDC = 1  # direct discovery controller


def _zero_fields(struct_) -> dict:
    """Every field of ``struct_`` at zero, as a dict to update and build from."""
    return {k: v for k, v in struct_.parse(bytes(IDENTIFY_LEN)).items() if not k.startswith("_")}


_ZERO_CTRL = _zero_fields(IdentifyController)
_ZERO_NS = _zero_fields(IdentifyNamespace)
ZERO_PAGE = bytes(IDENTIFY_LEN)


def identify_controller(ctrl: Controller) -> bytes:
    sub = ctrl.subsystem
    opts = ctrl.options
    disc = sub.is_discovery
    f = dict(_ZERO_CTRL)
    f.update(
        sn=sub.serial, mn=sub.model, fr=sub.firmware, rab=RAB,
        # Several controllers (one per host path) share namespaces; ANA reports path states.
        # Linux joins paths into one multipath head only with MULTI_CTRL, and reads the ANA log
        # only with CMIC.ANA (then MNAN must be non-zero and ≤ NN).
        cmic=0 if disc else CMIC_MULTI_PORT | CMIC_MULTI_CTRL | CMIC_ANA,
        mdts=int(math.log2(opts.max_transfer // 4096)),
        cntlid=ctrl.cntlid,  # Linux refuses a controller whose CNTLID differs from Connect's
        ver=sub.version,
        oaes=SUPPORTED_AENS_DISCOVERY if disc else SUPPORTED_AENS_IO,
        ctratt=CTRATT_128BIT_HOSTID | CTRATT_TBKAS,
        cntrltype=CntrlType.DISCOVERY if disc else CntrlType.IO,
        acl=ACL, aerl=AERL,
        lpa=LPA_EXTENDED | (0 if disc else LPA_SMART_PER_NS | LPA_CMD_EFFECTS),
        elpe=ELPE, kas=KAS_100MS,
        sqes=0x66, cqes=0x44,  # 64-byte SQEs and 16-byte CQEs, fixed on fabrics
        maxcmd=opts.max_queue_size,
        nn=sub.max_nsid,
        oncs=0 if disc else ONCS_COMPARE | ONCS_DSM | ONCS_WRITE_ZEROES | ONCS_TIMESTAMP,
        vwc=0 if disc else VWC_PRESENT_BROADCAST_FLUSH,
        # Linux insists on SGL support; TCP moves data with the transport SGL data block, and
        # in-capsule data uses the data block with offset (offset 0).
        sgls=SGLS_SUPPORTED | SGLS_TRANSPORT_DATA_BLOCK | SGLS_OFFSET,
        mnan=0 if disc else sub.max_nsid,
        subnqn=sub.nqn,
        ioccsz=(64 + opts.icd_size) // 16,  # 16-byte units, the SQE included
        iorcsz=1, icdoff=0, ctrattr=0, msdbd=1,
        dctype=DCTYPE_DDC if disc else 0,
    )
    if not disc:
        f.update(anatt=ANATT_SECONDS, anacap=ANACAP_ALL_STATES, anagrpmax=sub.max_nsid,
                 nanagrpid=sub.max_nsid)
    return IdentifyController.build(f)


def identify_namespace(ctrl: Controller, ns: Namespace | None) -> bytes:
    """CNS 0; an inactive NSID (or one hidden from this host) reads as zeros."""
    if ns is None:
        return ZERO_PAGE
    n = ns.nblocks
    f = dict(_ZERO_NS)
    lbaf = list(_ZERO_NS["lbaf"])
    lbaf[0] = {"ms": 0, "ds": ns.lba_shift, "rp": 0}
    f.update(nsze=n, ncap=n, nuse=n, nlbaf=0, flbas=0, nmic=NMIC_SHARED,
             dlfeat=DLFEAT_READS_ZEROES_WZ_DEALLOC, nvmcap=ns.size,
             anagrpid=ns.ana_group, nsattr=1 if ns.readonly else 0,
             nguid=ns.nguid or bytes(16), eui64=ns.eui64 or bytes(8), lbaf=lbaf)
    return IdentifyNamespace.build(f)


def ns_descriptors(ns: Namespace) -> bytes:
    """CNS 3: every identifier the namespace has, plus its command set (NVM)."""
    ids = {NIDT_CSI: b"\0"}
    if ns.eui64 and any(ns.eui64):
        ids[NIDT_EUI64] = ns.eui64
    if ns.nguid and any(ns.nguid):
        ids[NIDT_NGUID] = ns.nguid
    if ns.uuid is not None:
        ids[NIDT_UUID] = ns.uuid.bytes
    return build_ns_descriptors(ids)


def active_ns_list(nsids: list[int], after: int) -> bytes:
    """CNS 2: up to 1024 active NSIDs greater than ``after``, ascending."""
    out = [n for n in nsids if n > after][:1024]
    return struct.pack(f"<{len(out)}I", *out).ljust(IDENTIFY_LEN, b"\0")


# ---- log pages ----
def error_log(ctrl: Controller) -> bytes:
    parts = [ErrorLogEntry.build(e) for e in reversed(ctrl.errors)]  # newest first
    return b"".join(parts).ljust((ELPE + 1) * ERROR_LOG_ENTRY_LEN, b"\0")


def command_effects_log(admin: Iterable[int], io: Iterable[int], changes_data: set[int]) -> bytes:
    """Which opcodes this controller executes; ``changes_data`` are the I/O opcodes that may
    change logical block content (the kernel host revalidates after those run by passthrough)."""
    acs, iocs = [0] * 256, [0] * 256
    for op in admin:
        acs[op] = CSE_CSUPP
    for op in io:
        iocs[op] = CSE_CSUPP | (CSE_LBCC if op in changes_data else 0)
    return CommandEffectsLog.build({"acs": acs, "iocs": iocs})


def smart_log(ctrl: Controller, namespaces: list[Namespace], now: float) -> bytes:
    def units(nbytes: int) -> int:
        return -(-nbytes // 512000)  # thousands of 512-byte units, rounded up

    return SmartLog.build({
        "critical_warning": 0, "temperature": 293, "avail_spare": 100, "spare_thresh": 10,
        "percent_used": 0, "endu_grp_crit_warn_sumry": 0,
        "data_units_read": units(sum(n.bytes_read for n in namespaces)),
        "data_units_written": units(sum(n.bytes_written for n in namespaces)),
        "host_reads": sum(n.read_cmds for n in namespaces),
        "host_writes": sum(n.write_cmds for n in namespaces),
        "ctrl_busy_time": 0, "power_cycles": 1,
        "power_on_hours": int((now - ctrl.created) // 3600),
        "unsafe_shutdowns": 0, "media_errors": 0,
        "num_err_log_entries": ctrl.error_count,
        "warning_temp_time": 0, "critical_comp_time": 0, "temp_sensor": [0] * 8,
        "thm_temp1_trans_count": 0, "thm_temp2_trans_count": 0,
        "thm_temp1_total_time": 0, "thm_temp2_total_time": 0,
    })


def changed_ns_log(nsids: list[int] | None) -> bytes:
    """Up to 1024 changed NSIDs; None means more changed than fit (first entry FFFFFFFFh)."""
    if nsids is None:
        return struct.pack("<I", 0xFFFFFFFF).ljust(4096, b"\0")
    return struct.pack(f"<{len(nsids)}I", *nsids).ljust(4096, b"\0")


def ana_log(ctrl: Controller, lsp: int) -> bytes:
    """The ANA groups of the subsystem as seen through this controller's port.

    With RGO (return groups only) the NSID lists are left out. Linux checks every descriptor:
    GRPID non-zero and ≤ ANAGRPMAX, state valid; it finds a namespace's state by its NSID here.
    """
    sub = ctrl.subsystem
    rgo = bool(lsp & ANA_LSP_RGO)
    members: dict[int, list[int]] = {g: [] for g in sub.ana_groups()}
    if not rgo:
        for ns in sub.visible_namespaces(ctrl.hostnqn):
            members.setdefault(ns.ana_group, []).append(ns.nsid)
    groups = [{"grpid": g, "nnsids": len(nsids), "chgcnt": sub.group_chgcnt(g),
               "state": sub.ana_state(ctrl.port.portid, g), "nsids": nsids}
              for g, nsids in sorted(members.items())]
    return AnaLogPage.build({"header": {"chgcnt": sub.ana_chgcnt, "ngrps": len(groups)},
                             "groups": groups})


SMART_LEN = SMART_LOG_LEN
