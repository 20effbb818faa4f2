"""Log pages: discovery (0x70), error information (0x01), SMART / health (0x02), Commands
Supported and Effects (0x05) and ANA (0x0C)."""
from __future__ import annotations

from construct import (Array, Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct, this)

from ._types import NulPadded, Reserved, SpacePadded, U128

# ---- discovery ----
DISC_HDR_LEN = 1024
DISC_ENTRY_LEN = 1024

DiscoveryLogHeader = Struct(
    "genctr" / Int64ul,
    "numrec" / Int64ul,
    "recfmt" / Int16ul,
    "dlpf" / Int8ul,  # bit 0: extended entries present (SPDK); Linux treats it as reserved
    "rsvd19" / Int8ul,
    "tdlpl" / Int32ul,  # total log page length (SPDK); reserved for Linux
    "rsvd24" / Reserved(1000),
)

DiscoveryLogEntry = Struct(
    "trtype" / Int8ul,
    "adrfam" / Int8ul,
    "subtype" / Int8ul,
    "treq" / Int8ul,  # bits 1:0 secure channel, bit 2 SQ flow control disable supported
    "portid" / Int16ul,
    "cntlid" / Int16ul,
    "asqsz" / Int16ul,
    "eflags" / Int16ul,  # bit 0 DUPRETINFO, bit 1 EPCSD, bit 2 NCC
    "rsvd12" / Reserved(20),
    "trsvcid" / SpacePadded(32),
    "rsvd64" / Reserved(192),
    "subnqn" / NulPadded(256),
    "traddr" / SpacePadded(256),
    "tsas" / Bytes(256),  # TCP: byte 0 = SECTYPE
)

#: Extended attributes of an extended discovery log entry (LSP bit EXTDLPE).
ExtendedAttribute = Struct(
    "exattype" / Int16ul,
    "exatlen" / Int16ul,
    "exatval" / Bytes(this.exatlen),
)
ExtendedEntryHeader = Struct(
    "tel" / Int32ul,
    "numexat" / Int16ul,
    "rsvd" / Reserved(2),
)
ExtendedDiscoveryLogEntry = Struct(
    "entry" / DiscoveryLogEntry,
    "ext" / ExtendedEntryHeader,
    "exat" / Array(this.ext.numexat, ExtendedAttribute),
)

DiscoveryLogPage = Struct(
    "header" / DiscoveryLogHeader,
    "entries" / Array(this.header.numrec, DiscoveryLogEntry),
)

TREQ_SECURE_NOT_SPECIFIED = 0
TREQ_SECURE_REQUIRED = 1
TREQ_SECURE_NOT_REQUIRED = 2
TREQ_DISABLE_SQFLOW = 1 << 2
EFLAGS_DUPRETINFO = 1 << 0
EFLAGS_EPCSD = 1 << 1
EFLAGS_NCC = 1 << 2
LSP_EXTDLPE = 1 << 0
LSP_ALLSUBE = 1 << 1
EXATTYPE_HOSTID = 1
EXATTYPE_ADMIN_LABEL = 2

# ---- error information ----
ErrorLogEntry = Struct(
    "error_count" / Int64ul,
    "sqid" / Int16ul,
    "cmdid" / Int16ul,
    "status_field" / Int16ul,
    "param_error_location" / Int16ul,
    "lba" / Int64ul,
    "nsid" / Int32ul,
    "vs" / Int8ul,
    "trtype" / Int8ul,
    "rsvd30" / Reserved(2),
    "cs" / Int64ul,
    "trtype_spec_info" / Int16ul,
    "rsvd42" / Reserved(22),
)
ERROR_LOG_ENTRY_LEN = 64

# ---- SMART / health ----
SmartLog = Struct(
    "critical_warning" / Int8ul,
    "temperature" / Int16ul,  # kelvin
    "avail_spare" / Int8ul,
    "spare_thresh" / Int8ul,
    "percent_used" / Int8ul,
    "endu_grp_crit_warn_sumry" / Int8ul,
    "rsvd7" / Reserved(25),
    "data_units_read" / U128(),  # 32
    "data_units_written" / U128(),
    "host_reads" / U128(),
    "host_writes" / U128(),
    "ctrl_busy_time" / U128(),
    "power_cycles" / U128(),
    "power_on_hours" / U128(),
    "unsafe_shutdowns" / U128(),
    "media_errors" / U128(),
    "num_err_log_entries" / U128(),  # 176
    "warning_temp_time" / Int32ul,  # 192
    "critical_comp_time" / Int32ul,
    "temp_sensor" / Array(8, Int16ul),
    "thm_temp1_trans_count" / Int32ul,  # 216
    "thm_temp2_trans_count" / Int32ul,
    "thm_temp1_total_time" / Int32ul,
    "thm_temp2_total_time" / Int32ul,
    "rsvd232" / Reserved(280),
)
SMART_LOG_LEN = 512

# ---- Commands Supported and Effects (0x05) ----
CMD_EFFECTS_LEN = 4096
CSE_CSUPP = 1 << 0  # the command is supported
CSE_LBCC = 1 << 1  # it may change logical block content
CSE_NCC = 1 << 2  # it may change namespace capabilities
CSE_NIC = 1 << 3  # it may change the namespace inventory
CSE_CCC = 1 << 4  # it may change controller capabilities

CommandEffectsLog = Struct(
    "acs" / Array(256, Int32ul),  # per admin opcode
    "iocs" / Array(256, Int32ul),  # per I/O opcode
    "rsvd2048" / Reserved(2048),
)

# ---- ANA ----
AnaLogHeader = Struct("chgcnt" / Int64ul, "ngrps" / Int16ul, "rsvd10" / Reserved(6))
AnaGroupDescriptor = Struct(
    "grpid" / Int32ul,
    "nnsids" / Int32ul,
    "chgcnt" / Int64ul,
    "state" / Int8ul,
    "rsvd17" / Reserved(15),
    "nsids" / Array(this.nnsids, Int32ul),
)
AnaLogPage = Struct(
    "header" / AnaLogHeader,
    "groups" / Array(this.header.ngrps, AnaGroupDescriptor),
)
ANA_LSP_RGO = 1 << 0  # return groups only

