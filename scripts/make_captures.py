"""Record real NVMe/TCP traffic between the Linux kernel host and the kernel nvmet-tcp target.

`make captures` boots Debian's kernel under QEMU once (tests/vmrun.py), configures nvmet over
configfs, and records with tcpdump on lo while nvme-cli drives the kernel host through discovery
(8009 and 4420), persistent discovery with a discovery-log-change AEN, connect with 2 I/O queues,
keep-alive, in-capsule and R2T writes, reads, flush, write zeroes, DSM, identify, log pages and
disconnect — once plain, once with header and data digests — plus a shorter hold-out capture that
the decoder is not developed against. The pcaps land in tests/captures/.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.vmrun import run_guest, vm_available  # noqa: E402

NQN = "nqn.2024-01.io.pynvmetcp:capture"
NQN2 = "nqn.2024-01.io.pynvmetcp:capture2"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:7d0e1f2a-3b4c-4d5e-8f60-718293a4b5c6"
HOSTID = "7d0e1f2a-3b4c-4d5e-8f60-718293a4b5c6"

GUEST = r"""
set -u
OUT=__OUT__
C=/sys/kernel/config/nvmet
H="-q __HOSTNQN__ -I __HOSTID__"
mkns() {  # subsystem nqn, file, port ids...
    truncate -s 16M /tmp/$2; L=$(losetup -f --show /tmp/$2)
    mkdir $C/subsystems/$1; echo 1 > $C/subsystems/$1/attr_allow_any_host
    mkdir $C/subsystems/$1/namespaces/1
    echo -n $L > $C/subsystems/$1/namespaces/1/device_path
    echo 1 > $C/subsystems/$1/namespaces/1/enable
}
mkport() {  # id svcid
    mkdir $C/ports/$1; echo 127.0.0.1 > $C/ports/$1/addr_traddr; echo tcp > $C/ports/$1/addr_trtype
    echo $2 > $C/ports/$1/addr_trsvcid; echo ipv4 > $C/ports/$1/addr_adrfam
}
waitdev() { i=0; while [ ! -b /dev/nvme$1n1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; }
mkns __NQN__ a.img; mkns __NQN2__ b.img
mkport 1 4420; mkport 2 8009
ln -s $C/subsystems/__NQN__ $C/ports/1/subsystems/__NQN__
ln -s $C/subsystems/__NQN__ $C/ports/2/subsystems/__NQN__

session() {  # name, digest flags
    tcpdump -i lo -s 0 -U -w $OUT/$1.pcap tcp port 4420 or tcp port 8009 2>/dev/null &
    TD=$!; sleep 2
    nvme discover -t tcp -a 127.0.0.1 -s 8009 $H $2 > /dev/null
    nvme discover -t tcp -a 127.0.0.1 -s 4420 $H $2 > /dev/null
    nvme discover -p -t tcp -a 127.0.0.1 -s 8009 $H $2 > /dev/null
    ln -s $C/subsystems/__NQN2__ $C/ports/2/subsystems/__NQN2__   # discovery log change AEN
    sleep 1
    nvme connect -t tcp -a 127.0.0.1 -s 4420 -n __NQN__ $H --nr-io-queues 2 -k 2 $2 > /dev/null
    D=$(ls /sys/class/nvme-subsystem/*/ -d | head -1)
    N=$(for c in /sys/class/nvme/nvme*; do [ "$(cat $c/subsysnqn)" = __NQN__ ] && basename $c; done | head -1)
    waitdev ${N#nvme}
    B=/dev/${N}n1
    head -c 65536 /dev/urandom > /tmp/w64k; head -c 8192 /dev/urandom > /tmp/w8k
    dd if=/tmp/w8k of=$B bs=8192 count=1 oflag=direct status=none        # in-capsule
    dd if=/tmp/w64k of=$B bs=65536 count=1 seek=1 oflag=direct status=none  # R2T/H2CData
    dd if=$B of=/dev/null bs=65536 count=2 iflag=direct status=none
    nvme flush /dev/$N -n 1 > /dev/null
    nvme write-zeroes $B -s 256 -c 7 > /dev/null
    nvme dsm $B --ad -s 512 -b 8 > /dev/null
    nvme id-ctrl /dev/$N > /dev/null; nvme id-ns $B > /dev/null
    nvme smart-log /dev/$N > /dev/null; nvme error-log /dev/$N -e 1 > /dev/null
    nvme ana-log /dev/$N > /dev/null 2>&1
    sleep 3   # keep-alives (kato 2 s)
    nvme disconnect -n __NQN__ > /dev/null
    nvme disconnect -n nqn.2014-08.org.nvmexpress.discovery > /dev/null 2>&1
    for c in /sys/class/nvme/nvme*; do [ -e $c/delete_controller ] && echo 1 > $c/delete_controller; done 2>/dev/null
    rm -f $C/ports/2/subsystems/__NQN2__
    sleep 1; kill $TD; wait $TD 2>/dev/null
}
session kernel-plain ""
session kernel-digests "-g -G"
# hold-out: a different, shorter sequence (digests on discovery only, 3 queues, other sizes)
tcpdump -i lo -s 0 -U -w $OUT/kernel-holdout.pcap tcp port 4420 or tcp port 8009 2>/dev/null &
TD=$!; sleep 2
nvme discover -t tcp -a 127.0.0.1 -s 8009 $H -g -G > /dev/null
nvme connect -t tcp -a 127.0.0.1 -s 4420 -n __NQN__ $H --nr-io-queues 3 > /dev/null
N=$(for c in /sys/class/nvme/nvme*; do [ "$(cat $c/subsysnqn)" = __NQN__ ] && basename $c; done | head -1)
waitdev ${N#nvme}
head -c 40960 /dev/urandom | dd of=/dev/${N}n1 bs=40960 oflag=direct status=none
dd if=/dev/${N}n1 of=/dev/null bs=4096 count=10 iflag=direct status=none
nvme disconnect -n __NQN__ > /dev/null
sleep 1; kill $TD; wait $TD 2>/dev/null
uname -r > $OUT/kernel-version; nvme version > $OUT/nvme-version
ls -l $OUT
"""


def guest_script(out: Path) -> str:
    """The guest's sh script writing kernel-plain.pcap, kernel-digests.pcap and
    kernel-holdout.pcap into ``out`` (tests/vm/test_fresh_capture.py runs it in the test
    session's shared boot)."""
    return (GUEST.replace("__OUT__", str(out)).replace("__NQN2__", NQN2)
            .replace("__NQN__", NQN).replace("__HOSTNQN__", HOSTNQN)
            .replace("__HOSTID__", HOSTID))


def recorded(out: Path, rc: int, output: str) -> dict[str, str]:
    """The kernel and nvme-cli versions the guest script left in ``out``; a RuntimeError with
    its output when it did not get that far."""
    if not (out / "kernel-version").exists():
        raise RuntimeError(f"the capture guest failed (rc={rc}):\n{output[-3000:]}")
    return {n: (out / n).read_text().strip() for n in ("kernel-version", "nvme-version")}


def record(out: Path) -> dict[str, str]:
    """Boot the VM once and record the three captures into ``out``; returns the versions."""
    proc = run_guest(guest_script(out), rwdirs=[str(out)], timeout=900)
    return recorded(out, proc.returncode, proc.stdout)


def main() -> int:
    ok, why = vm_available()
    if not ok:
        print(f"make captures: {why}", file=sys.stderr)
        return 2
    dest = ROOT / "tests" / "captures"
    with tempfile.TemporaryDirectory() as tmp:
        versions = record(Path(tmp))
        for name in ("kernel-plain.pcap", "kernel-digests.pcap"):
            shutil.copy(Path(tmp) / name, dest / name)
        shutil.copy(Path(tmp) / "kernel-holdout.pcap", dest / "holdout" / "kernel-holdout.pcap")
    print(f"recorded with kernel {versions['kernel-version']}; {versions['nvme-version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
