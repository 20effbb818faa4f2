"""Our userspace host against the Linux kernel's nvmet-tcp target, in a real kernel under QEMU.

One VM boot serves every test here: the guest configures nvmet over configfs (a loop device on a
file as the namespace), runs guest_host_vs_kernel.py with the project's venv, and the tests assert on
its JSON lines. The kernel reading its own loop device is the oracle for what reached the disk.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import vmrun

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
NQN = "nqn.2024-01.io.pynvmetcp:kernel-target"

GUEST = f"""
set -e
truncate -s 128M /tmp/disk.img
LOOP=$(losetup -f --show /tmp/disk.img)
C=/sys/kernel/config/nvmet
mkdir $C/subsystems/{NQN}
echo 1 > $C/subsystems/{NQN}/attr_allow_any_host
mkdir $C/subsystems/{NQN}/namespaces/1
echo -n $LOOP > $C/subsystems/{NQN}/namespaces/1/device_path
echo 1 > $C/subsystems/{NQN}/namespaces/1/enable
mkdir $C/ports/1
echo 127.0.0.1 > $C/ports/1/addr_traddr
echo tcp > $C/ports/1/addr_trtype
echo 4420 > $C/ports/1/addr_trsvcid
echo ipv4 > $C/ports/1/addr_adrfam
ln -s $C/subsystems/{NQN} $C/ports/1/subsystems/{NQN}
cd {ROOT}
PYTHONPATH={ROOT} {ROOT}/.venv/bin/python tests/vm/guest_host_vs_kernel.py {NQN} $LOOP
"""


vmrun.part(__name__, lambda work: GUEST)


@pytest.fixture(scope="module")
def checks(vm_boot):
    return vmrun.part_checks(vm_boot, __name__)


def test_discovery_lists_the_subsystem(checks):
    (disc,) = checks["discover"]
    subsystems = [e for e in disc["entries"] if e[0] == 2]
    assert subsystems == [[2, NQN, "127.0.0.1", "4420"]]


@pytest.mark.parametrize("digest", [False, True])
def test_identify_through_kernel_target(checks, digest):
    (ident,) = [c for c in checks["identify"] if c["digest"] == digest]
    assert ident["subnqn"] == NQN
    assert ident["io_queues"] == 2
    assert ident["nsids"] == [1]
    assert ident["block_size"] * ident["nblocks"] == 128 << 20


@pytest.mark.parametrize("digest", [False, True])
def test_data_reaches_the_kernel_disk(checks, digest):
    (rw,) = [c for c in checks["write_read"] if c["digest"] == digest]
    assert rw["results"] == [[size, True, True] for size, _, _ in rw["results"]]
    assert [r[0] for r in rw["results"]] == [4096, 16384, 65536, 131072, 1 << 20]
    (wz,) = [c for c in checks["write_zeroes"] if c["digest"] == digest]
    assert wz["zero"] is True


@pytest.mark.parametrize("digest", [False, True])
def test_errors_carry_status(checks, digest):
    (oor,) = [c for c in checks["out_of_range"] if c["digest"] == digest]
    assert oor["raised"] is not None and oor["dnr"] is True


def test_asyncio_pipelined_io(checks):
    (pipe,) = checks["asyncio_pipelined"]
    assert pipe["same"] == pipe["total"] == 48
    assert pipe["disk_sha"] == pipe["want_sha"]
