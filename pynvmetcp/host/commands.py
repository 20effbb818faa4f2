"""Builders of the SQEs (and their data) the host sends: pure functions, no I/O.

The admin and fabrics builders use the construct views of spec/sqe.py; the NVM I/O builders pack the
same bytes with one precompiled ``struct`` call because they are on the hot path (the tests check
both give identical bytes). CID and SGL1 are left zero: the queue engine fills them in.
"""
from __future__ import annotations

import struct
import uuid as _uuid

from ..spec import sqe as S
from ..spec.fabrics import ConnectData
from ..spec.opcodes import (AdminOpcode, FabricsType, FeatureId, NvmOpcode, PROPERTY_SIZE,
                           Property)

_ZERO_SGL = {"address": 0, "length": 0, "sgl_id": 0}
_RW = struct.Struct("<BBHI16x16xQHHIIHH")  # opcode flags cid nsid | cdw2-3,mptr | sgl | cdw10-15
# The I/O opcodes as plain ints: an IntEnum member passed to struct costs a
# conversion per call, on the path of every I/O.
_READ, _WRITE, _COMPARE, _WRITE_ZEROES = (int(NvmOpcode.READ), int(NvmOpcode.WRITE),
                                          int(NvmOpcode.COMPARE), int(NvmOpcode.WRITE_ZEROES))
_NSID_ONLY = struct.Struct("<BBHI56x")


def _common(opcode: int, nsid: int = 0) -> dict:
    return {"opcode": opcode, "flags": 0, "cid": 0, "nsid": nsid, "cdw2": 0, "cdw3": 0,
            "mptr": 0, "dptr": _ZERO_SGL}


def _fabrics(fctype: int) -> dict:
    return {"opcode": AdminOpcode.FABRICS, "flags": 0, "cid": 0, "fctype": fctype,
            "dptr": _ZERO_SGL}


# ---- fabrics ----
def connect(qid: int, sqsize: int, kato_ms: int = 0, *, disable_sqflow: bool = False) -> bytes:
    cattr = S.CONNECT_CATTR_DISABLE_SQFLOW if disable_sqflow else 0
    return S.Connect.build({**_fabrics(FabricsType.CONNECT), "recfmt": 0, "qid": qid,
                            "sqsize": sqsize, "cattr": cattr, "rsvd2": 0, "kato": kato_ms})


def connect_data(hostid: _uuid.UUID, cntlid: int, subnqn: str, hostnqn: str) -> bytes:
    return ConnectData.build({"hostid": hostid, "cntlid": cntlid, "subnqn": subnqn,
                              "hostnqn": hostnqn})


def property_get(prop: Property) -> bytes:
    return S.PropertyGet.build({**_fabrics(FabricsType.PROPERTY_GET),
                                "attrib": 1 if PROPERTY_SIZE[prop] == 8 else 0,
                                "offset": prop})


def property_set(prop: Property, value: int) -> bytes:
    return S.PropertySet.build({**_fabrics(FabricsType.PROPERTY_SET),
                                "attrib": 1 if PROPERTY_SIZE[prop] == 8 else 0,
                                "offset": prop, "value": value})


def disconnect() -> bytes:
    return S.Disconnect.build({**_fabrics(FabricsType.DISCONNECT), "recfmt": 0})


# ---- admin ----
def identify(cns: int, nsid: int = 0, cntid: int = 0, csi: int = 0) -> bytes:
    return S.Identify.build({**_common(AdminOpcode.IDENTIFY, nsid), "cns": cns, "rsvd10": 0,
                             "cntid": cntid, "cnssid": 0, "rsvd11": 0, "csi": csi})


def get_log_page(lid: int, length: int, *, nsid: int = 0xFFFFFFFF, offset: int = 0,
                 lsp: int = 0, rae: bool = False, lsi: int = 0) -> bytes:
    numdl, numdu = S.numd(length)
    return S.GetLogPage.build({**_common(AdminOpcode.GET_LOG_PAGE, nsid), "lid": lid,
                               "lsp": (lsp & 0x7F) | (0x80 if rae else 0), "numdl": numdl,
                               "numdu": numdu, "lsi": lsi, "lpo": offset, "uuid_index": 0,
                               "csi": 0, "cdw15": 0})


def _features(opcode: int, fid: int, cdw11: int, *, nsid: int, sel: int = 0,
              save: bool = False) -> bytes:
    return S.Features.build({**_common(opcode, nsid),
                             "cdw10": {"sv": save, "rsvd": 0, "sel": sel, "fid": fid},
                             "cdw11": cdw11, "cdw12": 0, "cdw13": 0, "cdw14": 0, "cdw15": 0})


def set_features(fid: int, cdw11: int = 0, *, nsid: int = 0, save: bool = False) -> bytes:
    return _features(AdminOpcode.SET_FEATURES, fid, cdw11, nsid=nsid, save=save)


def get_features(fid: int, *, nsid: int = 0, sel: int = 0, cdw11: int = 0) -> bytes:
    return _features(AdminOpcode.GET_FEATURES, fid, cdw11, nsid=nsid, sel=sel)


def keep_alive() -> bytes:
    return _NSID_ONLY.pack(AdminOpcode.KEEP_ALIVE, 0, 0, 0)


def async_event_configuration(mask: int) -> bytes:
    """Set Features Asynchronous Event Configuration: which notices the controller may send
    (bits: spec.identify.NOTICE_AEC_BIT)."""
    return set_features(FeatureId.ASYNC_EVENT, mask)


def async_event_request() -> bytes:
    return _NSID_ONLY.pack(AdminOpcode.ASYNC_EVENT_REQUEST, 0, 0, 0)


# ---- NVM I/O (hot path) ----
def read(nsid: int, slba: int, nlb: int, *, fua: bool = False) -> bytes:
    """``nlb`` is the number of blocks (1-based here; the SQE carries it 0's based)."""
    control = S.RW_CONTROL_FUA if fua else 0
    return _RW.pack(_READ, 0, 0, nsid, slba, nlb - 1, control, 0, 0, 0, 0)


def write(nsid: int, slba: int, nlb: int, *, fua: bool = False) -> bytes:
    control = S.RW_CONTROL_FUA if fua else 0
    return _RW.pack(_WRITE, 0, 0, nsid, slba, nlb - 1, control, 0, 0, 0, 0)


def compare(nsid: int, slba: int, nlb: int) -> bytes:
    return _RW.pack(_COMPARE, 0, 0, nsid, slba, nlb - 1, 0, 0, 0, 0, 0)


def write_zeroes(nsid: int, slba: int, nlb: int, *, deallocate: bool = False) -> bytes:
    control = S.WZ_CONTROL_DEAC if deallocate else 0
    return _RW.pack(_WRITE_ZEROES, 0, 0, nsid, slba, nlb - 1, control, 0, 0, 0, 0)


def flush(nsid: int) -> bytes:
    return _NSID_ONLY.pack(NvmOpcode.FLUSH, 0, 0, nsid)


def dataset_management(nsid: int, ranges: list[tuple[int, int]], *,
                       deallocate: bool = True) -> tuple[bytes, bytes]:
    """DSM over ``ranges`` of (slba, nlb); returns the SQE and its range list data."""
    if not 1 <= len(ranges) <= 256:
        raise ValueError("DSM takes 1 to 256 ranges")
    sqe = S.DatasetManagement.build({**_common(NvmOpcode.DATASET_MANAGEMENT, nsid),
                                     "nr": len(ranges) - 1,
                                     "attributes": S.DSM_ATTR_DEALLOCATE if deallocate else 0})
    data = b"".join(S.DsmRange.build({"cattr": 0, "nlb": nlb, "slba": slba})
                    for slba, nlb in ranges)
    return sqe, data
