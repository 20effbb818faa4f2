"""The LightOS driver end to end in a real Linux kernel under QEMU (one part per cluster kind).

The guest (vm_guest_lightos.py) runs the real discovery-client service, connector and libvirt
volume driver against (a) the fake LightOS cluster — three storage nodes served by pynvmetcp's
target, every node's discovery log listing every node — and (b) the kernel's nvmet target
configured as a two-node, one-subsystem cluster. The kernel's NVMe/TCP host makes the block
devices. Asserts on the guest's JSON lines.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests import vmrun

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
VOL1 = "3b2f6c1e-58a4-4d0b-9c1e-000000000001"
VOL2 = "3b2f6c1e-58a4-4d0b-9c1e-000000000002"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:0f0e0d0c-0b0a-4909-8807-060504030201"


MODES = ("fake", "nvmet")


# One part per cluster kind: each starts after the shared boot's full reset (no controller,
# nvmet configuration, loop device or process of the other left).
for _mode in MODES:
    vmrun.part(__name__, lambda work, mode=_mode: (
        f"cd {ROOT}\nPYTHONPATH={ROOT}:{ROOT}/driver {sys.executable} "
        f"tests/driver/vm_guest_lightos.py /tmp/lightos-e2e {mode}\n"), variant=_mode)


@pytest.fixture(scope="module", params=MODES)
def checks(request, vm_boot):
    mode = request.param
    found = {name: recs[-1] for name, recs in
             vmrun.part_checks(vm_boot, __name__, variant=mode).items()}
    found = {name: {k: v for k, v in rec.items() if k not in ("mode", "at")}
             for name, rec in found.items()}
    errors = {k: v["error"] for k, v in found.items() if "error" in v}
    assert not errors, errors
    found["mode"] = mode
    return found


def test_found_dsc_through_the_running_service(checks):
    c = checks["connector_properties"]
    assert c["found_dsc"] == "found" and c["nqn"] == HOSTNQN


def test_attach_gives_the_block_device_of_the_volume_uuid(checks):
    a = checks["attach"]
    assert a["device"].startswith("/dev/nvme") and "c" not in a["device"][len("/dev/nvme"):]
    assert a["is_block"] and a["sysfs_uuid"] == VOL1
    ctrls = a["controllers"]
    if checks["mode"] == "fake":  # every node's log lists every node: one path per node
        assert sorted(c[2] for c in ctrls) == ["4420", "4421", "4422"]
        assert a["discovery_connected"][1] in (8009, 8010, 8011)
    else:  # an nvmet port's log lists only itself
        (ctrl,) = ctrls
        assert ctrl[2] in ("4420", "4421")
        assert a["discovery_connected"] == ["127.0.0.1", int(ctrl[2])]
    assert all(c[1] == "127.0.0.1" and c[3:] == [HOSTNQN.rsplit(":", 1)[1], "live"]
               for c in ctrls)


def test_data_reaches_the_volume(checks):
    assert checks["data"] == {"check": "data", "read_equal": True, "target_equal": True}


def test_extend_seen_through_the_aen(checks):
    e = checks["extend"]
    assert (e["before"], e["after"]) == (64 << 20, 128 << 20)


def test_second_volume_shares_the_cluster_controller(checks):
    s = checks["second_volume"]
    assert s["same_controllers"] == (3 if checks["mode"] == "fake" else 1)
    assert s["size"] == 32 << 20


def test_discovery_log_change_connects_the_new_subsystem(checks):
    d = checks["discovery_log_change"]
    assert d["log_reads"] == d["log_reads_before"] + 1
    assert d["device"].startswith("/dev/nvme")


def test_node_killed_during_io_io_continues_on_the_other_node(checks):
    n = checks["node_failure"]
    assert n["failovers"] >= 1 and n["now"][1] != n["killed_port"]
    assert n["errors"] == [] and n["writes_total"] > n["writes_before"] + 50
    assert n["same_device"] is True
    assert any(port != str(n["killed_port"]) and state == "live"
               for port, state in n["controllers"])


def test_reboot_restored_by_startup_reconnect(checks):
    r = checks["reboot"]
    assert r["gone_before"] is True
    assert all(d.startswith("/dev/nvme") for d in r["devices"])
    assert r["entry_files"] == sorted(f"{v}.conf" for v in (VOL1, VOL2))
    log = checks["service_log"]["stderr"]
    assert "startup reconnect: inst-1" in log and "startup reconnect: inst-2" in log


def test_reconnect_is_idempotent(checks):
    r = checks["reconnect_again"]
    assert r["rc"] == 0
    assert [(o["instance"], o["volume"], o["action"]) for o in r["outcomes"]] == [
        ("inst-1", VOL1, "already-connected"), ("inst-2", VOL2, "already-connected")]


def test_detach_disconnects_only_when_no_volume_needs_the_cluster(checks):
    d = checks["detach"]
    assert d["controllers_kept_for_other_volume"] is True
    assert d["entry_files"] == [] and d["device_gone"] and d["sub2_gone"]


def test_demo_takes_the_kernel_path_where_the_kernel_is(vm_boot):
    # run once, in the fake cluster's part: the demo brings its own cluster
    (d,) = vmrun.part_checks(vm_boot, __name__, variant="fake")["demo_kernel_path"]
    assert "error" not in d, d
    assert d["rc"] == 0, d["stderr"]
    out = d["stdout"]
    assert "attach (kernel): discovery-client service + connector + libvirt volume driver" in out
    assert "extend: 64 MiB → 128 MiB" in out and "LightOS demo done" in out
