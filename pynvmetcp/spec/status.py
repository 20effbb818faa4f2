"""Names of NVMe status codes and TermReq FES values, for messages people read."""
from __future__ import annotations

from .pdu import Fes

SCT_GENERIC = 0
SCT_COMMAND_SPECIFIC = 1
SCT_MEDIA = 2
SCT_PATH = 3
SCT_VENDOR = 7

GENERIC = {
    0x00: "Successful Completion",
    0x01: "Invalid Command Opcode",
    0x02: "Invalid Field in Command",
    0x03: "Command ID Conflict",
    0x04: "Data Transfer Error",
    0x05: "Commands Aborted due to Power Loss Notification",
    0x06: "Internal Error",
    0x07: "Command Abort Requested",
    0x08: "Command Aborted due to SQ Deletion",
    0x09: "Command Aborted due to Failed Fused Command",
    0x0A: "Command Aborted due to Missing Fused Command",
    0x0B: "Invalid Namespace or Format",
    0x0C: "Command Sequence Error",
    0x0D: "Invalid SGL Segment Descriptor",
    0x0E: "Invalid Number of SGL Descriptors",
    0x0F: "Data SGL Length Invalid",
    0x10: "Metadata SGL Length Invalid",
    0x11: "SGL Descriptor Type Invalid",
    0x12: "Invalid Use of Controller Memory Buffer",
    0x13: "PRP Offset Invalid",
    0x14: "Atomic Write Unit Exceeded",
    0x15: "Operation Denied",
    0x16: "SGL Offset Invalid",
    0x18: "Host Identifier Inconsistent Format",
    0x19: "Keep Alive Timer Expired",
    0x1A: "Keep Alive Timeout Invalid",
    0x1B: "Command Aborted due to Preempt and Abort",
    0x1C: "Sanitize Failed",
    0x1D: "Sanitize In Progress",
    0x1E: "SGL Data Block Granularity Invalid",
    0x1F: "Command Not Supported for Queue in CMB",
    0x20: "Namespace is Write Protected",
    0x21: "Command Interrupted",
    0x22: "Transient Transport Error",
    0x80: "LBA Out of Range",
    0x81: "Capacity Exceeded",
    0x82: "Namespace Not Ready",
    0x83: "Reservation Conflict",
    0x84: "Format In Progress",
}

COMMAND_SPECIFIC = {
    0x00: "Completion Queue Invalid",
    0x01: "Invalid Queue Identifier",
    0x02: "Invalid Queue Size",
    0x03: "Abort Command Limit Exceeded",
    0x05: "Asynchronous Event Request Limit Exceeded",
    0x06: "Invalid Firmware Slot",
    0x07: "Invalid Firmware Image",
    0x08: "Invalid Interrupt Vector",
    0x09: "Invalid Log Page",
    0x0A: "Invalid Format",
    0x0B: "Firmware Activation Requires Conventional Reset",
    0x0C: "Invalid Queue Deletion",
    0x0D: "Feature Identifier Not Saveable",
    0x0E: "Feature Not Changeable",
    0x0F: "Feature Not Namespace Specific",
    0x10: "Firmware Activation Requires NVM Subsystem Reset",
    0x11: "Firmware Activation Requires Controller Level Reset",
    0x12: "Firmware Activation Requires Maximum Time Violation",
    0x13: "Firmware Activation Prohibited",
    0x14: "Overlapping Range",
    0x15: "Namespace Insufficient Capacity",
    0x16: "Namespace Identifier Unavailable",
    0x18: "Namespace Already Attached",
    0x19: "Namespace Is Private",
    0x1A: "Namespace Not Attached",
    0x1B: "Thin Provisioning Not Supported",
    0x1C: "Controller List Invalid",
    0x80: "Conflicting Attributes",
    0x81: "Invalid Protection Information",
    0x82: "Attempted Write to Read Only Range",
}

#: Command-specific codes of Fabrics commands (they overlap the NVM set's 0x80..0x82).
FABRICS = {
    0x80: "Incompatible Format",
    0x81: "Controller Busy",
    0x82: "Connect Invalid Parameters",
    0x83: "Connect Restart Discovery",
    0x84: "Connect Invalid Host",
    0x85: "Invalid Queue Type",
    0x90: "Discover Restart",
    0x91: "Authentication Required",
}

MEDIA = {
    0x80: "Write Fault",
    0x81: "Unrecovered Read Error",
    0x82: "End-to-end Guard Check Error",
    0x83: "End-to-end Application Tag Check Error",
    0x84: "End-to-end Reference Tag Check Error",
    0x85: "Compare Failure",
    0x86: "Access Denied",
    0x87: "Deallocated or Unwritten Logical Block",
}

PATH = {
    0x00: "Internal Path Error",
    0x01: "Asymmetric Access Persistent Loss",
    0x02: "Asymmetric Access Inaccessible",
    0x03: "Asymmetric Access Transition",
    0x60: "Controller Pathing Error",
    0x70: "Host Pathing Error",
    0x71: "Command Aborted By Host",
}

# Generic codes the target returns, by name, so code reads like the specification.
SC_SUCCESS = 0x00
SC_INVALID_OPCODE = 0x01
SC_INVALID_FIELD = 0x02
SC_CID_CONFLICT = 0x03
SC_DATA_XFER_ERROR = 0x04
SC_INTERNAL = 0x06
SC_ABORT_REQ = 0x07
SC_INVALID_NS = 0x0B
SC_CMD_SEQ_ERROR = 0x0C
SC_SGL_INVALID_DATA = 0x0F
SC_SGL_INVALID_TYPE = 0x11
SC_SGL_INVALID_OFFSET = 0x16
SC_KA_TIMEOUT_INVALID = 0x1A
SC_LBA_RANGE = 0x80
SC_NS_NOT_READY = 0x82
# Command specific
SC_INVALID_QID = 0x01
SC_QUEUE_SIZE = 0x02
SC_AER_LIMIT = 0x05
SC_INVALID_LOG_PAGE = 0x09
SC_FEATURE_NOT_SAVEABLE = 0x0D
SC_FEATURE_NOT_CHANGEABLE = 0x0E
SC_CONNECT_FORMAT = 0x80
SC_CONNECT_CTRL_BUSY = 0x81
SC_CONNECT_INVALID_PARAM = 0x82
SC_CONNECT_RESTART_DISC = 0x83
SC_CONNECT_INVALID_HOST = 0x84
# Media
SC_COMPARE_FAILED = 0x85
SC_ACCESS_DENIED = 0x86
# Path
SC_ANA_PERSISTENT_LOSS = 0x01
SC_ANA_INACCESSIBLE = 0x02
SC_ANA_TRANSITION = 0x03

_SCT_NAMES = {SCT_GENERIC: "Generic", SCT_COMMAND_SPECIFIC: "Command Specific",
              SCT_MEDIA: "Media and Data Integrity", SCT_PATH: "Path Related",
              SCT_VENDOR: "Vendor Specific"}


def status_name(sct: int, sc: int, fabrics: bool = False) -> str:
    """The specification's name of a status; ``fabrics`` selects the Fabrics command-specific set."""
    table = {
        SCT_GENERIC: GENERIC,
        SCT_COMMAND_SPECIFIC: FABRICS if fabrics else COMMAND_SPECIFIC,
        SCT_MEDIA: MEDIA,
        SCT_PATH: PATH,
    }.get(sct, {})
    if sc in table:
        return table[sc]
    if sct == SCT_COMMAND_SPECIFIC and not fabrics and sc in FABRICS:
        return FABRICS[sc]
    return f"{_SCT_NAMES.get(sct, f'SCT {sct:#x}')} status {sc:#04x}"


FES_NAMES = {
    Fes.INVALID_HEADER_FIELD: "Invalid PDU Header Field",
    Fes.PDU_SEQUENCE_ERROR: "PDU Sequence Error",
    Fes.HEADER_DIGEST_ERROR: "Header Digest Error",
    Fes.DATA_TRANSFER_OUT_OF_RANGE: "Data Transfer Out of Range",
    Fes.DATA_TRANSFER_LIMIT_EXCEEDED: "Data Transfer Limit Exceeded (R2T Limit Exceeded)",
    Fes.UNSUPPORTED_PARAMETER: "Unsupported Parameter",
}


def fes_name(fes: int) -> str:
    """Indexed by value, never by position (pitfall 2)."""
    return FES_NAMES.get(fes, f"Reserved FES {fes:#x}")
