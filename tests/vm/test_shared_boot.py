"""The shared boot's isolation (tests/vmrun.py): a part that leaves everything behind — a kernel
host controller connected to an nvmet subsystem on a loop device, the port, a mount under /tmp,
processes that outlive it, one in a session of its own — and the reset after it, which must leave
the kernel as the next part expects to find it."""
from __future__ import annotations

import pytest

from tests import vmrun

pytestmark = pytest.mark.vm
NQN = "nqn.2024-01.io.pynvmetcp:leftover"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:7d3c1a52-64f0-4a8e-9d2b-5c6e7f809a1b"

GUEST = f"""
set -e
C=/sys/kernel/config/nvmet
truncate -s 16M /tmp/leftover.img
LOOP=$(losetup -f --show /tmp/leftover.img)
S=$C/subsystems/{NQN}
mkdir $S && echo 1 > $S/attr_allow_any_host
mkdir $S/namespaces/1 && echo -n $LOOP > $S/namespaces/1/device_path
echo 1 > $S/namespaces/1/enable
mkdir $C/ports/7
echo 127.0.0.1 > $C/ports/7/addr_traddr; echo tcp > $C/ports/7/addr_trtype
echo 4420 > $C/ports/7/addr_trsvcid; echo ipv4 > $C/ports/7/addr_adrfam
ln -s $S $C/ports/7/subsystems/{NQN}
nvme connect -t tcp -a 127.0.0.1 -s 4420 -n {NQN} -q {HOSTNQN} > /dev/null
mkdir /tmp/mnt && mount -t tmpfs none /tmp/mnt
sleep 100000 > /dev/null 2>&1 &
setsid sleep 100000 > /dev/null 2>&1 &
echo "{{\\"check\\": \\"left\\", \\"controllers\\": \\"$(ls /sys/class/nvme | xargs)\\", \\
\\"loops\\": $(losetup -a | wc -l), \\"mounted\\": $(grep -c ' /tmp/mnt ' /proc/mounts), \\
\\"cgroup\\": \\"$(cat /proc/$!/cgroup)\\"}}"
echo '{{"check": "done"}}'
"""
vmrun.part(__name__, lambda work: GUEST, timeout=300)


@pytest.fixture(scope="module")
def left(vm_boot) -> dict:
    return vmrun.part_checks(vm_boot, __name__)["left"][-1]


def test_the_part_left_the_kernel_busy(left):
    assert left["controllers"].startswith("nvme")
    assert left["loops"] == 1 and left["mounted"] == 1
    assert left["cgroup"] == "0::/vmpart-test_shared_boot"  # a sleeper in a session of its own


def test_the_reset_after_it_leaves_nothing(vm_boot, left):
    assert vm_boot.result(__name__).leftovers() == {"controllers": "", "ports": "", "subsystems": "", "loops": "",
                                  "mounts": "", "processes": ""}
