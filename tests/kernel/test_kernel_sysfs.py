"""The sysfs model on a tree recorded from Debian's 6.1 kernel in the test VM.

tests/kernel/sysfs_tree was made by scripts/record_sysfs.py (run by
tests/vm/kernel_fallback_guest.py --record) with, connected at the time:
  nvme0  → nqn.2024-01.io.pynvmetcp:kernel-fallback   127.0.0.1:4420  path nvme0c0n1
  nvme1  → nqn.2024-01.io.pynvmetcp:kernel-fallback   127.0.0.1:4421  path nvme0c1n1
           (both paths lead to the multipath head nvme0n1: uuid 6f1c2a34-…, nguid 0123…)
  nvme2  → nqn.2024-01.io.pynvmetcp:kernel-fallback-2 127.0.0.1:4420  path nvme2c2n1 → nvme2n1
  nvme3  → the discovery subsystem, 127.0.0.1:8009, persistent (kato 30), no namespaces
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pynvmetcp import kernel
from pynvmetcp.kernel.sysfs import Sysfs, SysfsError

TREE = Path(__file__).parent / "sysfs_tree"
NQN = "nqn.2024-01.io.pynvmetcp:kernel-fallback"
NQN2 = "nqn.2024-01.io.pynvmetcp:kernel-fallback-2"
NS_UUID = "6f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
NS_NGUID = "0123456789abcdef0123456789abcdef"
NS2_UUID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:aed91044-64b5-43e7-9d0a-450903fa7dc6"


@pytest.fixture
def sysfs():
    return Sysfs(TREE)


def test_controllers_and_their_attributes(sysfs):
    ctrls = sysfs.controllers()
    assert [c.name for c in ctrls] == ["nvme0", "nvme1", "nvme2", "nvme3"]
    c0 = ctrls[0]
    assert (c0.instance, c0.transport, c0.state, c0.subsysnqn) == (0, "tcp", "live", NQN)
    assert (c0.traddr, c0.trsvcid, c0.address["src_addr"]) == ("127.0.0.1", "4420", "127.0.0.1")
    assert c0.hostnqn == HOSTNQN and c0.hostid == "e5cee598-33c2-45fb-a268-6e4ae7a21dfb"
    assert (c0.cntlid, c0.kato, c0.subsystem, c0.device) == (1, 5, "nvme-subsys0", "/dev/nvme0")
    assert ctrls[1].trsvcid == "4421" and ctrls[1].subsystem == "nvme-subsys0"
    assert ctrls[2].subsysnqn == NQN2 and ctrls[2].subsystem == "nvme-subsys2"


def test_discovery_controller_has_no_namespaces(sysfs):
    disc = sysfs.controller("nvme3")
    assert disc.is_discovery and disc.kato == 30 and disc.trsvcid == "8009"
    assert disc.namespaces == ()
    assert not any(c.is_discovery for c in sysfs.controllers()[:3])


def test_both_paths_expose_the_multipath_head_never_a_path_device(sysfs):
    (ns0,) = sysfs.controller("nvme0").namespaces
    (ns1,) = sysfs.controller("nvme1").namespaces
    assert ns0 == ns1
    assert ns0.name == "nvme0n1" and ns0.device == "/dev/nvme0n1"
    assert [p.name for p in ns0.paths] == ["nvme0c0n1", "nvme0c1n1"]
    assert [p.controller for p in ns0.paths] == ["nvme0", "nvme1"]
    assert [p.ana_state for p in ns0.paths] == ["optimized", "optimized"]
    assert (ns0.nsid, ns0.size, ns0.size_bytes) == (1, 131072, 64 << 20)
    assert ns0.uuid == NS_UUID and ns0.wwid == f"uuid.{NS_UUID}"
    assert ns0.nguid == "01234567-89ab-cdef-0123-456789abcdef"
    assert sysfs.namespace("nvme0c0n1") is None  # a hidden path is not a namespace device


def test_namespaces_are_listed_once(sysfs):
    assert [(ns.name, ns.uuid) for ns in sysfs.namespaces()] == [
        ("nvme0n1", NS_UUID), ("nvme2n1", NS2_UUID)]


@pytest.mark.parametrize("ids, device", [
    ({"uuid": NS_UUID}, "/dev/nvme0n1"),
    ({"uuid": NS_UUID.upper()}, "/dev/nvme0n1"),
    ({"uuid": NS_UUID.replace("-", "")}, "/dev/nvme0n1"),
    ({"nguid": NS_NGUID}, "/dev/nvme0n1"),
    ({"nguid": bytes.fromhex(NS_NGUID)}, "/dev/nvme0n1"),
    ({"uuid": NS2_UUID}, "/dev/nvme2n1"),
    ({"wwid": f"uuid.{NS2_UUID}"}, "/dev/nvme2n1"),
    ({"nsid": 1, "subsysnqn": NQN2}, "/dev/nvme2n1"),
    ({"uuid": NS_UUID, "subsysnqn": NQN2}, None),
    ({"uuid": "00000000-0000-0000-0000-000000000000"}, None),
    ({"nguid": "ffff"}, None),  # nvme2n1 has no nguid at all: never matches
])
def test_find_block_device(sysfs, ids, device):
    assert sysfs.find_block_device(**ids) == device
    assert kernel.find_block_device(sysfs=sysfs, **ids) == device


def test_find_needs_an_identifier(sysfs):
    with pytest.raises(ValueError):
        sysfs.find_namespace()


def test_find_controllers_like_the_kernels_duplicate_check(sysfs):
    found = sysfs.find_controllers(transport="tcp", traddr="127.0.0.1", trsvcid=4420,
                                   subsysnqn=NQN, hostnqn=HOSTNQN)
    assert [c.name for c in found] == ["nvme0"]
    assert [c.name for c in sysfs.find_controllers(subsysnqn=NQN)] == ["nvme0", "nvme1"]
    assert sysfs.find_controllers(traddr="10.0.0.1") == []


def test_public_listing(sysfs):
    assert [c.name for c in kernel.controllers(sysfs)] == ["nvme0", "nvme1", "nvme2", "nvme3"]
    assert [n.name for n in kernel.namespaces(sysfs)] == ["nvme0n1", "nvme2n1"]


def test_control_files_are_written(tmp_path):
    tree = tmp_path / "sys"
    shutil.copytree(TREE, tree, symlinks=True)
    s = Sysfs(tree)
    s.delete_controller("nvme1")
    s.rescan("nvme2")
    s.reset("nvme0")
    ctl = tree / "devices/virtual/nvme-fabrics/ctl"
    assert (ctl / "nvme1/delete_controller").read_text() == "1"
    assert (ctl / "nvme2/rescan_controller").read_text() == "1"
    assert (ctl / "nvme0/reset_controller").read_text() == "1"
    assert kernel.disconnect(subnqn=NQN2, sysfs=s) == ["nvme2"]
    assert (ctl / "nvme2/delete_controller").read_text() == "1"
    with pytest.raises(SysfsError, match="no such controller"):
        s.delete_controller("nvme9")
    with pytest.raises(ValueError):
        s.delete_controller("nvme0n1")


def test_empty_or_missing_root(tmp_path):
    s = Sysfs(tmp_path)
    assert s.controllers() == [] and s.namespaces() == []
    assert s.find_block_device(uuid=NS_UUID) is None


def test_without_multipath_the_controller_holds_the_disk(tmp_path):
    """nvme_core.multipath=N: no heads, no paths; /sys/class/nvme/nvme4/nvme4n1 is the disk."""
    ctl = tmp_path / "devices/virtual/nvme-fabrics/ctl/nvme4"
    disk = ctl / "nvme4n1"
    disk.mkdir(parents=True)
    for name, value in {"address": "traddr=10.0.0.5,trsvcid=4420", "state": "live",
                        "subsysnqn": NQN, "transport": "tcp", "cntlid": "7"}.items():
        (ctl / name).write_text(value + "\n")
    for name, value in {"nsid": "1", "size": "2048", "uuid": NS_UUID,
                        "wwid": f"uuid.{NS_UUID}"}.items():
        (disk / name).write_text(value + "\n")
    (tmp_path / "class/nvme").mkdir(parents=True)
    (tmp_path / "class/block").mkdir(parents=True)
    (tmp_path / "class/nvme/nvme4").symlink_to("../../devices/virtual/nvme-fabrics/ctl/nvme4")
    (tmp_path / "class/block/nvme4n1").symlink_to(
        "../../devices/virtual/nvme-fabrics/ctl/nvme4/nvme4n1")
    s = Sysfs(tmp_path, dev_root="/dev")
    (ns,) = s.controller("nvme4").namespaces
    assert (ns.name, ns.nsid, ns.size_bytes, ns.paths) == ("nvme4n1", 1, 1 << 20, ())
    assert s.find_block_device(uuid=NS_UUID) == "/dev/nvme4n1"


def test_controller_behind_a_device(sysfs):
    """/dev/nvme2n1's 2 is the subsystem instance; its controller is found through its path."""
    c = kernel.KernelController.from_device("/dev/nvme2n1", sysfs=sysfs)
    assert (c.name, c.nsid) == ("nvme2", 1)
    c = kernel.KernelController.from_device("/dev/nvme0n1", sysfs=sysfs)
    assert (c.name, c.nsid) == ("nvme0", 1)
    c = kernel.KernelController.from_device("nvme3", sysfs=sysfs)
    assert (c.name, c.nsid) == ("nvme3", None)
    with pytest.raises(kernel.KernelUnavailable):
        kernel.KernelController.from_device("/dev/nvme0c0n1", sysfs=sysfs)


def test_head_outliving_its_first_controller(tmp_path):
    """After nvme0 is deleted, nvme0n1 is reached through nvme1 only: no controller nvme0."""
    tree = tmp_path / "sys"
    shutil.copytree(TREE, tree, symlinks=True)
    for link in ("class/nvme/nvme0", "class/block/nvme0c0n1",
                 "devices/virtual/nvme-subsystem/nvme-subsys0/nvme0"):
        (tree / link).unlink()
    shutil.rmtree(tree / "devices/virtual/nvme-fabrics/ctl/nvme0")
    s = Sysfs(tree)
    ns = s.find_namespace(uuid=NS_UUID)
    assert ns.name == "nvme0n1" and [p.controller for p in ns.paths] == ["nvme1"]
    c = kernel.KernelController.from_device("/dev/nvme0n1", sysfs=s)
    assert (c.name, c.nsid) == ("nvme1", 1)
