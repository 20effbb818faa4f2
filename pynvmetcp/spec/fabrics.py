"""Fabrics data structures: Connect data and the controller properties (CAP, VS, CC, CSTS)."""
from __future__ import annotations

from construct import BitsInteger, Flag, Int16ul, Struct

from ._types import LEBits, NulPadded, Reserved, Uuid

CONNECT_DATA_LEN = 1024
#: In-capsule data bytes of admin and Fabrics commands on NVMe/TCP (the admin queue's IOCCSZ
#: counterpart, which no page reports; Linux, SPDK and FreeBSD all use it: pitfall 14).
ADMIN_ICD_SIZE = 8192
NQN_FIELD_LEN = 256
NQN_MAX_LEN = 223

ConnectData = Struct(
    "hostid" / Uuid(),
    "cntlid" / Int16ul,  # 0xFFFF: dynamic controller (admin queue); the allocated one for I/O queues
    "rsvd1" / Reserved(238),
    "subnqn" / NulPadded(NQN_FIELD_LEN),
    "hostnqn" / NulPadded(NQN_FIELD_LEN),
    "rsvd2" / Reserved(256),
)

#: Byte offsets inside the connect data, for Connect Invalid Parameters (IATTR=1, IPO).
CONNECT_DATA_OFFSET = {"hostid": 0, "cntlid": 16, "subnqn": 256, "hostnqn": 512}

Cap = LEBits(
    "rsvd61" / BitsInteger(3),
    "crms" / BitsInteger(2),
    "nsss" / Flag,
    "cmbs" / Flag,
    "pmrs" / Flag,
    "mpsmax" / BitsInteger(4),
    "mpsmin" / BitsInteger(4),
    "cps" / BitsInteger(2),
    "bps" / Flag,
    "css" / BitsInteger(8),
    "nssrs" / Flag,
    "dstrd" / BitsInteger(4),
    "to" / BitsInteger(8),  # 500 ms units: worst-case time to CSTS.RDY
    "rsvd19" / BitsInteger(5),
    "ams" / BitsInteger(2),
    "cqr" / Flag,
    "mqes" / BitsInteger(16),  # 0's based maximum queue entries
)

Vs = LEBits("mjr" / BitsInteger(16), "mnr" / BitsInteger(8), "ter" / BitsInteger(8))

Cc = LEBits(
    "rsvd24" / BitsInteger(8),
    "iocqes" / BitsInteger(4),
    "iosqes" / BitsInteger(4),
    "shn" / BitsInteger(2),
    "ams" / BitsInteger(3),
    "mps" / BitsInteger(4),
    "css" / BitsInteger(3),
    "rsvd1" / BitsInteger(3),
    "en" / Flag,
)

Csts = LEBits(
    "rsvd6" / BitsInteger(26),
    "pp" / Flag,
    "nssro" / Flag,
    "shst" / BitsInteger(2),
    "cfs" / Flag,
    "rdy" / Flag,
)

CC_EN = 1 << 0
CC_SHN_NORMAL = 1
CC_SHN_ABRUPT = 2
CSTS_RDY = 1 << 0
CSTS_CFS = 1 << 1
CSTS_SHST_NORMAL = 0
CSTS_SHST_OCCURRING = 1
CSTS_SHST_COMPLETE = 2
NVME_VS_1_3 = 0x00010300
NVME_VS_1_4 = 0x00010400
