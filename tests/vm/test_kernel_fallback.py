"""The kernel fallback (pynvmetcp.kernel) on a real Linux kernel under QEMU, in one boot.

The guest (kernel_fallback_guest.py, run with the project's venv) sets up the kernel nvmet-tcp
target over configfs — two subsystems backed by loop devices on files in /tmp, three ports
(4420, 4421 for a second path, 8009 for discovery) — then drives the kernel *host* through
pynvmetcp.kernel: connect, block device by namespace UUID, O_DIRECT dd checked against the
target's backing file, passthrough identify/log pages/I/O, "already connected", multipath,
discovery by ioctl, typed connect errors, clean disconnect; then the same against our userspace
target when it exists. The tests assert on its JSON lines.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import vmrun


pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
NQN = "nqn.2024-01.io.pynvmetcp:kernel-fallback"
NS_UUID = "6f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b"

GUEST = f"""
cd {ROOT}
PYTHONPATH={ROOT} {ROOT}/.venv/bin/python tests/vm/kernel_fallback_guest.py
"""


vmrun.part(__name__, lambda work: GUEST)


@pytest.fixture(scope="module")
def checks(vm_boot):
    found = vmrun.part_checks(vm_boot, __name__)
    return {name: recs[-1] for name, recs in found.items()}


def ok(checks, name: str) -> dict:
    rec = checks.get(name)
    assert rec is not None, f"check {name!r} did not run"
    assert "error" not in rec, f"{name}: {rec['error']}\n{rec.get('trace', '')}"
    return rec


def test_available_and_kernel_options(checks):
    assert ok(checks, "available")["ok"] is True
    supported = ok(checks, "options")["supported"]
    for name in ("traddr", "trsvcid", "nqn", "hostnqn", "hostid", "nr_io_queues", "queue_size",
                 "keep_alive_tmo", "ctrl_loss_tmo", "reconnect_delay", "fast_io_fail_tmo",
                 "hdr_digest", "data_digest", "duplicate_connect", "disable_sqflow", "tos"):
        assert name in supported


def test_connect_and_block_device_by_uuid(checks):
    c = ok(checks, "connect")
    assert c["name"].startswith("nvme") and c["already"] is False and c["state"] == "live"
    assert "nr_io_queues=2" in c["options"] and "keep_alive_tmo=5" in c["options"]
    b = ok(checks, "block_device")
    assert b["exists"] and b["device"] == b["by_nguid"]
    assert "c" not in b["device"].rsplit("nvme", 1)[1]  # the head, never a hidden path device
    assert b["wwid"] == f"uuid.{NS_UUID}" and b["size"] == 64 * 1024 * 1024 // 512


def test_direct_io_reaches_the_target(checks):
    dd = ok(checks, "dd")
    assert dd["read_equal"] and dd["target_equal"]


def test_passthrough_identify_and_log_pages(checks):
    i = ok(checks, "identify")
    assert i["subnqn"] == NQN and i["ns_uuid"] == NS_UUID and i["namespaces"] == [1]
    assert i["nsze"] == 64 * 1024 * 1024 // 512
    lp = ok(checks, "logpage")
    assert lp["error_entries"] == 1 and "data_units_written" in lp["smart_keys"]


def test_ioctl_returns_the_15_bit_status(checks):
    s = ok(checks, "status_encoding")
    # Invalid Field (SC 2) and Invalid Opcode (SC 1) with DNR; the kernel hands back the CQE
    # status field shifted right by one (no phase bit), nvmet also sets More (an error log entry)
    assert s["rc_bad_log"] & 0xFF == 0x02 and s["rc_bad_log"] & 0x4000
    assert s["rc_bad_opcode"] & 0xFF == 0x01 and s["rc_bad_opcode"] & 0x4000
    assert s["rc_bad_log"] < 0x8000
    assert s["typed"] == {"status": s["rc_bad_log"], "sct": 0, "sc": 2, "dnr": True,
                          "name": "Invalid Field in Command"}


def test_io_passthrough(checks):
    io = ok(checks, "io_passthru")
    assert io["equal"] and io["into_equal"] and io["block_size"] == 512


def test_second_connect_reports_already_connected(checks):
    a = ok(checks, "already")
    assert a["already"] is True and a["same"] is True


def test_multipath_paths_map_to_one_head(checks):
    m = ok(checks, "multipath")
    first = ok(checks, "connect")["name"]
    assert len(m["paths"]) == 2 and m["device"] == f"/dev/{m['head']}"
    assert m["per_controller"][first] == m["per_controller"][m["second"]] == [m["head"]]
    assert ok(checks, "second_subsystem")["device"] != m["device"]


def test_kernel_discovery(checks):
    d = ok(checks, "discovery")
    assert [2, NQN, "127.0.0.1", "8009"] in d["entries"]
    assert d["left_behind"] == []  # the one-shot discovery controller was removed
    p = ok(checks, "persistent_discovery")
    assert p["entries"] == len(d["entries"]) and p["controllers"][0][1] == 30
    assert ok(checks, "persistent_discovery_reuse")["controllers"] == [p["controllers"][0][0]]


def test_connect_errors_are_typed(checks):
    e = ok(checks, "errors")
    assert e["refused"]["type"] == "ConnectionRefused" and e["refused"]["errno"] == 111
    assert e["unknown_nqn"]["type"] == "ConnectRejected" and e["unknown_nqn"]["errno"] == 5
    assert any("Connect Invalid" in line for line in e["unknown_nqn"]["kernel_log"])


def test_disconnect_leaves_nothing(checks):
    d = ok(checks, "disconnect")
    assert d["left"] == [] and d["device_gone"]


def test_against_the_userspace_target(checks):
    u = ok(checks, "userspace_target")
    if "skipped" in u:
        pytest.skip(u["skipped"])
    assert u["state"] == "live" and u["device"] and u["dd_equal"]
    assert u["already"] is True and u["left"] == []
