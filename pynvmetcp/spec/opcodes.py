"""Opcodes and identifiers, named as in the NVMe base and fabrics specifications."""
from __future__ import annotations

import enum


class AdminOpcode(enum.IntEnum):
    DELETE_IO_SQ = 0x00
    CREATE_IO_SQ = 0x01
    GET_LOG_PAGE = 0x02
    DELETE_IO_CQ = 0x04
    CREATE_IO_CQ = 0x05
    IDENTIFY = 0x06
    ABORT = 0x08
    SET_FEATURES = 0x09
    GET_FEATURES = 0x0A
    ASYNC_EVENT_REQUEST = 0x0C
    NS_MANAGEMENT = 0x0D
    FW_COMMIT = 0x10
    FW_DOWNLOAD = 0x11
    DEVICE_SELF_TEST = 0x14
    NS_ATTACHMENT = 0x15
    KEEP_ALIVE = 0x18
    DIRECTIVE_SEND = 0x19
    DIRECTIVE_RECEIVE = 0x1A
    VIRTUALIZATION_MGMT = 0x1C
    NVME_MI_SEND = 0x1D
    NVME_MI_RECEIVE = 0x1E
    DOORBELL_BUFFER_CONFIG = 0x7C
    FABRICS = 0x7F
    FORMAT_NVM = 0x80
    SECURITY_SEND = 0x81
    SECURITY_RECEIVE = 0x82
    SANITIZE = 0x84
    GET_LBA_STATUS = 0x86


class NvmOpcode(enum.IntEnum):
    FLUSH = 0x00
    WRITE = 0x01
    READ = 0x02
    WRITE_UNCORRECTABLE = 0x04
    COMPARE = 0x05
    WRITE_ZEROES = 0x08
    DATASET_MANAGEMENT = 0x09
    VERIFY = 0x0C
    RESERVATION_REGISTER = 0x0D
    RESERVATION_REPORT = 0x0E
    RESERVATION_ACQUIRE = 0x11
    RESERVATION_RELEASE = 0x15
    COPY = 0x19
    FABRICS = 0x7F


class FabricsType(enum.IntEnum):
    """FCTYPE of a Fabrics command (opcode 0x7F)."""

    PROPERTY_SET = 0x00
    CONNECT = 0x01
    PROPERTY_GET = 0x04
    AUTH_SEND = 0x05
    AUTH_RECEIVE = 0x06
    DISCONNECT = 0x08


class Cns(enum.IntEnum):
    """Identify CNS values a fabrics controller answers."""

    NAMESPACE = 0x00
    CONTROLLER = 0x01
    ACTIVE_NS_LIST = 0x02
    NS_ID_DESCRIPTORS = 0x03
    NVMSET_LIST = 0x04
    CSI_NAMESPACE = 0x05
    CSI_CONTROLLER = 0x06
    CSI_ACTIVE_NS_LIST = 0x07


class LogPageId(enum.IntEnum):
    ERROR = 0x01
    SMART = 0x02
    FW_SLOT = 0x03
    CHANGED_NS_LIST = 0x04
    CMD_EFFECTS = 0x05
    DEVICE_SELF_TEST = 0x06
    ANA = 0x0C
    PERSISTENT_EVENT = 0x0D
    DISCOVERY = 0x70
    RESERVATION_NOTIFICATION = 0x80
    SANITIZE = 0x81


class FeatureId(enum.IntEnum):
    ARBITRATION = 0x01
    POWER_MGMT = 0x02
    LBA_RANGE = 0x03
    TEMP_THRESH = 0x04
    ERR_RECOVERY = 0x05
    VOLATILE_WC = 0x06
    NUM_QUEUES = 0x07
    IRQ_COALESCE = 0x08
    IRQ_CONFIG = 0x09
    WRITE_ATOMIC = 0x0A
    ASYNC_EVENT = 0x0B
    AUTO_PST = 0x0C
    HOST_MEM_BUF = 0x0D
    TIMESTAMP = 0x0E
    KATO = 0x0F
    HCTM = 0x10
    NOPSC = 0x11
    RRL = 0x12
    PLM_CONFIG = 0x13
    PLM_WINDOW = 0x14
    HOST_BEHAVIOR = 0x16
    SANITIZE_CONFIG = 0x17
    SW_PROGRESS = 0x80
    HOST_ID = 0x81
    RESV_MASK = 0x82
    RESV_PERSIST = 0x83


class SglId(enum.IntEnum):
    """SGL identifier byte, (type << 4) | subtype, as used on NVMe/TCP."""

    DATA_BLOCK_OFFSET = 0x01  # in-capsule data
    TRANSPORT_DATA_BLOCK = 0x5A  # data moved by R2T/H2CData or C2HData


class Property(enum.IntEnum):
    """Controller property offsets for Property Get/Set."""

    CAP = 0x00
    VS = 0x08
    CC = 0x14
    CSTS = 0x1C
    NSSR = 0x20


#: Size of each property (bytes); Property Get/Set ATTRIB.SIZE is 1 for 8-byte properties.
PROPERTY_SIZE = {Property.CAP: 8, Property.VS: 4, Property.CC: 4, Property.CSTS: 4,
                 Property.NSSR: 4}


class AsyncEventType(enum.IntEnum):
    ERROR = 0
    SMART = 1
    NOTICE = 2
    IMMEDIATE = 3
    ONESHOT = 4
    IO_COMMAND_SPECIFIC = 6
    VENDOR = 7


class AsyncEventNotice(enum.IntEnum):
    """Asynchronous Event Information for AET = Notice."""

    NS_ATTR_CHANGED = 0x00
    FW_ACTIVATION = 0x01
    TELEMETRY = 0x02
    ANA_CHANGE = 0x03
    PLE_AGGREGATE = 0x04
    LBA_STATUS = 0x05
    ENDURANCE_GROUP = 0x06
    DISCOVERY_LOG_CHANGE = 0xF0


class AnaState(enum.IntEnum):
    OPTIMIZED = 0x01
    NON_OPTIMIZED = 0x02
    INACCESSIBLE = 0x03
    PERSISTENT_LOSS = 0x04
    CHANGE = 0x0F


class TrType(enum.IntEnum):
    RDMA = 1
    FC = 2
    TCP = 3
    LOOP = 254


class AdrFam(enum.IntEnum):
    IPV4 = 1
    IPV6 = 2
    IB = 3
    FC = 4
    LOOP = 254


class SubType(enum.IntEnum):
    """Discovery log entry SUBTYPE."""

    REFERRAL = 1
    NVME = 2
    CURRENT_DISCOVERY = 3


class CntrlType(enum.IntEnum):
    IO = 1
    DISCOVERY = 2
    ADMIN = 3


DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
NVME_DISC_PORT = 8009
NVME_PORT = 4420
DYNAMIC_CNTLID = 0xFFFF
