"""Identify data structures (4096 bytes each), with the kernel's field names and offsets."""
from __future__ import annotations

from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct, this

from ._types import NulPadded, Reserved, SpacePadded, U128
from .opcodes import AsyncEventNotice

IDENTIFY_LEN = 4096

PowerState = Struct(
    "max_power" / Int16ul,
    "rsvd2" / Int8ul,
    "flags" / Int8ul,
    "entry_lat" / Int32ul,
    "exit_lat" / Int32ul,
    "read_tput" / Int8ul,
    "read_lat" / Int8ul,
    "write_tput" / Int8ul,
    "write_lat" / Int8ul,
    "idle_power" / Int16ul,
    "idle_scale" / Int8ul,
    "rsvd19" / Int8ul,
    "active_power" / Int16ul,
    "active_work_scale" / Int8ul,
    "rsvd23" / Reserved(9),
)

IdentifyController = Struct(
    "vid" / Int16ul,  # 0
    "ssvid" / Int16ul,
    "sn" / SpacePadded(20),  # 4
    "mn" / SpacePadded(40),  # 24
    "fr" / SpacePadded(8),  # 64
    "rab" / Int8ul,  # 72
    "ieee" / Bytes(3),
    "cmic" / Int8ul,  # 76
    "mdts" / Int8ul,  # 77
    "cntlid" / Int16ul,  # 78
    "ver" / Int32ul,  # 80
    "rtd3r" / Int32ul,
    "rtd3e" / Int32ul,
    "oaes" / Int32ul,  # 92: bit 8 NS attribute, bit 11 ANA change, bit 31 discovery log change
    "ctratt" / Int32ul,  # 96
    "rsvd100" / Reserved(11),
    "cntrltype" / Int8ul,  # 111
    "fguid" / Bytes(16),  # 112
    "crdt1" / Int16ul,
    "crdt2" / Int16ul,
    "crdt3" / Int16ul,
    "rsvd134" / Reserved(122),
    "oacs" / Int16ul,  # 256
    "acl" / Int8ul,
    "aerl" / Int8ul,  # 259
    "frmw" / Int8ul,
    "lpa" / Int8ul,  # 261
    "elpe" / Int8ul,
    "npss" / Int8ul,
    "avscc" / Int8ul,
    "apsta" / Int8ul,
    "wctemp" / Int16ul,
    "cctemp" / Int16ul,
    "mtfa" / Int16ul,
    "hmpre" / Int32ul,
    "hmmin" / Int32ul,
    "tnvmcap" / U128(),  # 280
    "unvmcap" / U128(),
    "rpmbs" / Int32ul,  # 312
    "edstt" / Int16ul,
    "dsto" / Int8ul,
    "fwug" / Int8ul,
    "kas" / Int16ul,  # 320: keep-alive granularity, 100 ms units
    "hctma" / Int16ul,
    "mntmt" / Int16ul,
    "mxtmt" / Int16ul,
    "sanicap" / Int32ul,
    "hmminds" / Int32ul,
    "hmmaxd" / Int16ul,
    "nvmsetidmax" / Int16ul,
    "endgidmax" / Int16ul,
    "anatt" / Int8ul,  # 342
    "anacap" / Int8ul,  # 343
    "anagrpmax" / Int32ul,
    "nanagrpid" / Int32ul,
    "rsvd352" / Reserved(160),
    "sqes" / Int8ul,  # 512
    "cqes" / Int8ul,
    "maxcmd" / Int16ul,
    "nn" / Int32ul,  # 516
    "oncs" / Int16ul,  # 520
    "fuses" / Int16ul,
    "fna" / Int8ul,
    "vwc" / Int8ul,  # 525
    "awun" / Int16ul,
    "awupf" / Int16ul,
    "nvscc" / Int8ul,
    "nwpc" / Int8ul,
    "acwu" / Int16ul,
    "ocfs" / Int16ul,
    "sgls" / Int32ul,  # 536
    "mnan" / Int32ul,
    "rsvd544" / Reserved(224),
    "subnqn" / NulPadded(256),  # 768
    "rsvd1024" / Reserved(768),
    "ioccsz" / Int32ul,  # 1792: 16-byte units, SQE included
    "iorcsz" / Int32ul,
    "icdoff" / Int16ul,  # 1800
    "ctrattr" / Int8ul,  # 1802
    "msdbd" / Int8ul,
    "ofcs" / Int16ul,
    "dctype" / Int8ul,  # 1806
    "rsvd1807" / Reserved(241),
    "psd" / Array(32, PowerState),  # 2048
    "vs" / Bytes(1024),  # 3072
)

# ONCS bits (optional NVM commands)
ONCS_COMPARE = 1 << 0
ONCS_WRITE_UNCORRECTABLE = 1 << 1
ONCS_DSM = 1 << 2
ONCS_WRITE_ZEROES = 1 << 3
ONCS_SAVE_FEATURES = 1 << 4
ONCS_RESERVATIONS = 1 << 5
# OAES bits
OAES_NS_ATTR = 1 << 8
OAES_ANA_CHANGE = 1 << 11
OAES_DISC_LOG_CHANGE = 1 << 31
#: The Asynchronous Event Configuration bit (Set Features 0x0B, CDW11) that lets a controller
#: report each notice; it sits at the notice's OAES position.
NOTICE_AEC_BIT = {AsyncEventNotice.NS_ATTR_CHANGED: OAES_NS_ATTR,
                  AsyncEventNotice.ANA_CHANGE: OAES_ANA_CHANGE,
                  AsyncEventNotice.DISCOVERY_LOG_CHANGE: OAES_DISC_LOG_CHANGE}
# CMIC bits
CMIC_MULTI_PORT = 1 << 0
CMIC_MULTI_CTRL = 1 << 1
CMIC_ANA = 1 << 3
# CTRATT bits
CTRATT_128BIT_HOSTID = 1 << 0
# LPA bits
LPA_CMD_EFFECTS = 1 << 1
LPA_EXTENDED = 1 << 2
# SGLS: keyed data block + SGL supported, transport data block
SGLS_SUPPORTED = 1 << 0
SGLS_KEYED = 1 << 2
SGLS_TRANSPORT_DATA_BLOCK = 1 << 18
SGLS_OFFSET = 1 << 20

LbaFormat = Struct("ms" / Int16ul, "ds" / Int8ul, "rp" / Int8ul)

IdentifyNamespace = Struct(
    "nsze" / Int64ul,  # 0
    "ncap" / Int64ul,
    "nuse" / Int64ul,
    "nsfeat" / Int8ul,  # 24
    "nlbaf" / Int8ul,  # 0's based
    "flbas" / Int8ul,
    "mc" / Int8ul,
    "dpc" / Int8ul,
    "dps" / Int8ul,
    "nmic" / Int8ul,  # 30
    "rescap" / Int8ul,
    "fpi" / Int8ul,
    "dlfeat" / Int8ul,  # 33
    "nawun" / Int16ul,
    "nawupf" / Int16ul,
    "nacwu" / Int16ul,
    "nabsn" / Int16ul,
    "nabo" / Int16ul,
    "nabspf" / Int16ul,
    "noiob" / Int16ul,
    "nvmcap" / U128(),  # 48
    "npwg" / Int16ul,  # 64
    "npwa" / Int16ul,
    "npdg" / Int16ul,
    "npda" / Int16ul,
    "nows" / Int16ul,
    "rsvd74" / Reserved(18),
    "anagrpid" / Int32ul,  # 92
    "rsvd96" / Reserved(3),
    "nsattr" / Int8ul,  # 99
    "nvmsetid" / Int16ul,
    "endgid" / Int16ul,
    "nguid" / Bytes(16),  # 104
    "eui64" / Bytes(8),  # 120
    "lbaf" / Array(64, LbaFormat),  # 128
    "vs" / Bytes(3712),  # 384
)

NMIC_SHARED = 1 << 0
NSFEAT_THIN = 1 << 0

NsIdDescriptor = Struct(
    "nidt" / Int8ul,
    "nidl" / Int8ul,
    "rsvd" / Reserved(2),
    "nid" / Bytes(this.nidl),
)

NIDT_EUI64 = 1
NIDT_NGUID = 2
NIDT_UUID = 3
NIDT_CSI = 4
NIDL = {NIDT_EUI64: 8, NIDT_NGUID: 16, NIDT_UUID: 16, NIDT_CSI: 1}

#: Active namespace list (CNS 2): up to 1024 NSIDs, zero-terminated.
ActiveNsList = Array(1024, Int32ul)


def parse_ns_descriptors(page: bytes) -> dict[int, bytes]:
    """NIDT → NID from a CNS 3 page, stopping at the first zero-type descriptor."""
    found: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(page) and page[off] != 0:
        nidl = page[off + 1]
        if off + 4 + nidl > len(page):
            raise ValueError(f"namespace identification descriptor at {off} overruns the page")
        found[page[off]] = bytes(page[off + 4:off + 4 + nidl])
        off += 4 + nidl
    return found


def build_ns_descriptors(ids: dict[int, bytes]) -> bytes:
    """A CNS 3 page (exactly 4096 bytes) from NIDT → NID; ``parse_ns_descriptors`` reads it back."""
    for t, v in ids.items():
        if not 1 <= t <= 0xFF or len(v) > 0xFF:
            raise ValueError(f"namespace identifier type {t} / length {len(v)} out of range")
    out = b"".join(NsIdDescriptor.build({"nidt": t, "nidl": len(v), "nid": v})
                   for t, v in sorted(ids.items()))
    if len(out) > IDENTIFY_LEN:
        raise ValueError(f"namespace identification descriptors take {len(out)} bytes, "
                         f"more than the {IDENTIFY_LEN}-byte page")
    return out.ljust(IDENTIFY_LEN, b"\0")

