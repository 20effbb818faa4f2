"""Status names, NvmeStatusError fields from the 15-bit status, FES names by value (pitfall 2)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynvmetcp.errors import NvmeStatusError, ProtocolError, TermReqReceived
from pynvmetcp.spec import cqe, status
from pynvmetcp.spec.pdu import Fes


@pytest.mark.parametrize("sct,sc,fabrics,name", [
    (0, 0x00, False, "Successful Completion"),
    (0, 0x02, False, "Invalid Field in Command"),
    (0, 0x0B, True, "Invalid Namespace or Format"),
    (0, 0x19, False, "Keep Alive Timer Expired"),
    (0, 0x22, False, "Transient Transport Error"),
    (0, 0x80, False, "LBA Out of Range"),
    (1, 0x01, False, "Invalid Queue Identifier"),
    (1, 0x09, False, "Invalid Log Page"),
    (1, 0x82, False, "Attempted Write to Read Only Range"),  # NVM set
    (1, 0x80, True, "Incompatible Format"),  # Fabrics set
    (1, 0x81, True, "Controller Busy"),
    (1, 0x82, True, "Connect Invalid Parameters"),
    (1, 0x83, True, "Connect Restart Discovery"),
    (1, 0x84, True, "Connect Invalid Host"),
    (1, 0x85, True, "Invalid Queue Type"),
    (1, 0x90, True, "Discover Restart"),
    (1, 0x91, True, "Authentication Required"),
    (1, 0x84, False, "Connect Invalid Host"),  # no NVM meaning: the Fabrics name is used
    (2, 0x81, False, "Unrecovered Read Error"),
    (2, 0x85, False, "Compare Failure"),
    (2, 0x86, True, "Access Denied"),
    (3, 0x00, False, "Internal Path Error"),
    (3, 0x02, False, "Asymmetric Access Inaccessible"),
    (3, 0x03, False, "Asymmetric Access Transition"),
    (3, 0x71, False, "Command Aborted By Host"),
])
def test_status_name(sct, sc, fabrics, name):
    assert status.status_name(sct, sc, fabrics=fabrics) == name


@pytest.mark.parametrize("sct,sc,text", [
    (0, 0x7E, "Generic status 0x7e"),
    (1, 0xEE, "Command Specific status 0xee"),
    (2, 0x00, "Media and Data Integrity status 0x00"),
    (3, 0x55, "Path Related status 0x55"),
    (7, 0x12, "Vendor Specific status 0x12"),
    (5, 0x01, "SCT 0x5 status 0x01"),
])
def test_unknown_status_names_still_say_what_they_are(sct, sc, text):
    assert status.status_name(sct, sc) == text


@settings(max_examples=200, deadline=None)
@given(sct=st.integers(0, 7), sc=st.integers(0, 255), dnr=st.booleans(), more=st.booleans(),
       crd=st.integers(0, 3), phase=st.booleans(), fabrics=st.booleans())
def test_nvme_status_error_fields(sct, sc, dnr, more, crd, phase, fabrics):
    value = cqe.make_status(sct, sc, dnr=dnr, more=more, crd=crd)
    assert 0 <= value < 1 << 15
    err = NvmeStatusError(value, fabrics=fabrics, cid=7)
    assert (err.sct, err.sc, err.dnr, err.more, err.crd) == (sct, sc, dnr, more, crd)
    assert err.status == value and err.cid == 7
    assert err.name == status.status_name(sct, sc, fabrics=fabrics)
    assert err.name in str(err) and (", DNR" in str(err)) == dnr
    # the same status as the CQE carries it (16 bits, phase in bit 0) decodes identically
    wire = int.from_bytes(cqe.StatusField.build({"dnr": dnr, "m": more, "crd": crd, "sct": sct,
                                                 "sc": sc, "p": phase}), "little")
    assert wire >> 1 == value
    parsed = cqe.StatusField.parse(wire.to_bytes(2, "little"))
    assert (parsed.sct, parsed.sc, parsed.dnr, parsed.p) == (sct, sc, dnr, phase)


def test_nvme_status_error_examples():
    err = NvmeStatusError(0x4182, fabrics=True)  # DNR, SCT 1, SC 0x82
    assert (err.sct, err.sc, err.dnr) == (1, 0x82, True)
    assert err.name == "Connect Invalid Parameters"
    assert str(err) == "Connect Invalid Parameters (sct=0x1, sc=0x82, DNR)"
    err = NvmeStatusError(0x0302)  # path: ANA inaccessible, retryable
    assert (err.sct, err.sc, err.dnr) == (3, 0x02, False)
    assert err.name == "Asymmetric Access Inaccessible"
    # bits above the 15-bit field are ignored
    assert NvmeStatusError(0x8000 | 0x0002).status == 0x0002


def test_fes_name_by_value():
    assert status.fes_name(1) == "Invalid PDU Header Field"
    assert status.fes_name(2) == "PDU Sequence Error"
    assert status.fes_name(3) == "Header Digest Error"
    assert status.fes_name(4) == "Data Transfer Out of Range"
    five = status.fes_name(0x05)
    assert "R2T Limit Exceeded" in five and "Data Transfer Limit Exceeded" in five
    assert status.fes_name(6) == "Unsupported Parameter"
    assert status.fes_name(0) == "Reserved FES 0x0"
    assert status.fes_name(7) == "Reserved FES 0x7"
    # keys are the values themselves, not positions in a list (SPDK's off-by-one, pitfall 2)
    for fes in Fes:
        assert status.fes_name(int(fes)) == status.FES_NAMES[fes]


def test_protocol_error_and_termreq_received():
    err = ProtocolError("bad", Fes.INVALID_HEADER_FIELD, 3, bytes(200))
    assert (err.fes, err.fei, len(err.header)) == (1, 3, 128)
    peer = TermReqReceived(5, 0x10, b"\x04")
    assert "R2T Limit Exceeded" in str(peer) and "fes=0x5" in str(peer)
    assert (peer.fes, peer.fei, peer.header) == (5, 0x10, b"\x04")
