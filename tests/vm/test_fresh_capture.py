"""A capture that is not in the repository: recorded now in the kernel VM (kernel host ↔ kernel
nvmet-tcp target, the `make captures` sequence), then decoded and compared PDU by PDU with
tshark's dissector, exactly as the committed captures are."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pynvmetcp.capture import decode
from tests import vmrun
from tests.capture.test_kernel_captures import tshark_pdus

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]


def _make_captures():
    spec = importlib.util.spec_from_file_location("make_captures",
                                                  ROOT / "scripts" / "make_captures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE_CAPTURES = _make_captures()
vmrun.part(__name__, MAKE_CAPTURES.guest_script)


@pytest.fixture(scope="module")
def fresh(vm_boot):
    res = vm_boot.result(__name__)
    MAKE_CAPTURES.recorded(res.workdir, res.rc, res.output)
    return res.workdir


@pytest.mark.parametrize("name", ["kernel-plain.pcap", "kernel-digests.pcap",
                                  "kernel-holdout.pcap"])
def test_fresh_capture_agrees_with_tshark(fresh, name):
    path = fresh / name
    recs = list(decode(str(path)))
    theirs = tshark_pdus(path)
    assert not [r for r in recs if r["type"] == "error"]
    assert len(recs) == sum(len(v) for v in theirs.values()) > 100
    ours: dict[int, list[dict]] = {}
    for r in recs:
        ours.setdefault(r["frame"], []).append(r)
    assert sorted(ours) == sorted(theirs)
    for frame, layers in theirs.items():
        for mine, t in zip(ours[frame], layers):
            assert (int(t["nvme-tcp.type"]), int(t["nvme-tcp.plen"]), int(t["nvme-tcp.pdo"]),
                    int(t["nvme-tcp.flags"], 16)) == (mine["pdu_type"], mine["plen"],
                                                       mine["pdo"], mine["flags"]), frame
            if mine["hdgst"] is not None:
                assert t["nvme-tcp.hdgst.status"] == "1" and mine["hdgst_ok"]
            if mine["ddgst"] is not None:
                assert t["nvme-tcp.ddgst.status"] == "1" and mine["ddgst_ok"]
            if "datal" in mine:
                assert int(t["nvme-tcp.data.length"], 0) == mine["datal"]
