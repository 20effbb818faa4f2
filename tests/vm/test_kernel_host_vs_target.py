"""The Linux kernel's nvme-tcp host against our userspace target, in a real kernel under QEMU.

One VM boot serves every test here. Inside the guest our target runs as a process
(``python -m pynvmetcp target``, a file-backed and a memory namespace, an allow list, a
discovery-only port), and the kernel host does what a user would: ``nvme discover``, ``nvme
connect`` with two I/O queues, mkfs.ext4, mount, write files, sync, umount, remount, checksum,
``nvme id-ctrl``/``id-ns``, ``nvme disconnect``; then all of it again with header and data
digests. Finally the target is stopped and its backing file is mounted through a loop device: the
kernel reading our file is the oracle that the data reached the disk. The guest prints one JSON
line per check; the tests assert on those lines, and on the guest's dmesg staying clean.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import vmrun

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
NQN = "nqn.2024-01.io.pynvmetcp:kernel-host"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:5b4c9a1e-7f3d-4e2a-9c8b-1d0e2f3a4b5c"
HOSTID = "5b4c9a1e-7f3d-4e2a-9c8b-1d0e2f3a4b5c"
STRANGER = "nqn.2014-08.org.nvmexpress:uuid:0f0e0d0c-0b0a-4908-8706-050403020100"
STRANGER_ID = "0f0e0d0c-0b0a-4908-8706-050403020100"

GUEST_PY = r'''
import glob, hashlib, importlib.util, json, os, signal, socket, subprocess, sys, time

ROOT, NQN, HOSTNQN, HOSTID, STRANGER, STRANGER_ID, OUT = sys.argv[1:8]
PY = sys.executable
CONN = ["-t", "tcp", "-a", "127.0.0.1", "-s", "4420", "-n", NQN, "-q", HOSTNQN, "-I", HOSTID]


def emit(check, **kw):
    print(json.dumps({"check": check, **kw}), flush=True)


def kmsg(text):
    """Writes a marker into the kernel log, so the test can tell which kernel messages fell
    inside a step; returns the marker as dmesg shows it."""
    line = f"pynvmetcp-test: {text}"
    with open("/dev/kmsg", "w") as f:
        f.write(line + "\n")
    return line


def sh(cmd, check=True):
    p = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True)
    if check and p.returncode:
        raise RuntimeError(f"{cmd} failed ({p.returncode}): {p.stdout}{p.stderr}")
    return p


def wait_port(port, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("target did not start")
            time.sleep(0.2)


def controller():
    for d in glob.glob("/sys/class/nvme/nvme*"):
        try:
            if open(d + "/subsysnqn").read().strip() == NQN:
                return os.path.basename(d)
        except OSError:
            pass
    return None


def wait_for(fn, timeout=90):  # generous: the kernel under emulation on a loaded machine
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    return fn()


def namespaces(ctrl):
    """/dev nodes of the controller's namespaces, nvmeXnY (multipath: X is the subsystem)."""
    out = {}
    for p in glob.glob(f"/sys/class/nvme/{ctrl}/nvme*n*"):
        name = os.path.basename(p)
        nsid = int(open(p + "/nsid").read())
        if "c" in name[4:]:  # hidden path device nvmeXcYnZ: the head is nvmeXnZ
            x = name[4:].split("c")[0]
            name = f"nvme{x}n{name.split('n')[-1]}"
        out[nsid] = "/dev/" + name
    return out


def step(name):
    def deco(fn):
        try:
            fn()
        except Exception as exc:  # one failed step is reported, the rest still runs
            emit(name, error=f"{type(exc).__name__}: {exc}")
    return deco


def files_sums(root):
    return {f: hashlib.sha256(open(os.path.join(root, f), "rb").read()).hexdigest()
            for f in sorted(os.listdir(root)) if f != "lost+found"}


sh("modprobe nvme-tcp")
sh("modprobe loop", check=False)
sh("ip link set lo up")
sh("dmesg -C", check=False)
sh("truncate -s 256M /tmp/disk.img")
os.makedirs("/tmp/mnt", exist_ok=True)
main = "pynvmetcp" if importlib.util.find_spec("pynvmetcp.__main__") else "pynvmetcp.cli.target"
args = [PY, "-m", main] + (["target"] if main == "pynvmetcp" else []) + [
    "--listen", "127.0.0.1:4420", "--discovery-port", "8009", "--subsystem", NQN,
    "--namespace", "/tmp/disk.img", "--namespace", "mem:64M", "--allow-host", HOSTNQN, "-vv"]
try:
    log = open(os.path.join(OUT, "target.log"), "w")
except OSError:  # the shared directory is not writable here: keep the log in the guest
    OUT = "/tmp"
    log = open(os.path.join(OUT, "target.log"), "w")
target = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                          env=dict(os.environ, PYTHONPATH=ROOT))
wait_port(4420, target)
wait_port(8009, target)
emit("target_started", module=main)
st = {}


@step("discover")
def _():
    p = sh(["nvme", "discover", "-t", "tcp", "-a", "127.0.0.1", "-s", "8009", "-q", HOSTNQN,
            "-I", HOSTID, "-o", "json"])
    recs = json.loads(p.stdout).get("records", [])
    emit("discover", entries=[[r["subtype"], r["subnqn"], r["traddr"], r["trsvcid"]]
                              for r in recs])
    p = sh(["nvme", "discover", "-t", "tcp", "-a", "127.0.0.1", "-s", "8009", "-q", STRANGER,
            "-I", STRANGER_ID, "-o", "json"])
    emit("discover_stranger", entries=[[r["subtype"], r["subnqn"]]
                                       for r in json.loads(p.stdout).get("records", [])])


@step("stranger_refused")
def _():
    p = sh(["nvme", "connect", "-t", "tcp", "-a", "127.0.0.1", "-s", "4420", "-n", NQN,
            "-q", STRANGER, "-I", STRANGER_ID], check=False)
    emit("stranger_refused", rc=p.returncode, ctrl=controller())


def connect_and_check(tag, extra):
    p = sh(["nvme", "connect"] + CONN + ["--nr-io-queues", "2"] + extra)
    ctrl = wait_for(controller)
    nss = wait_for(lambda: (lambda n: n if len(n) == 2 else None)(namespaces(ctrl)))
    wait_for(lambda: all(os.path.exists(d) for d in nss.values()))
    qc = int(open(f"/sys/class/nvme/{ctrl}/queue_count").read())
    state = open(f"/sys/class/nvme/{ctrl}/state").read().strip()
    idc = json.loads(sh(["nvme", "id-ctrl", "/dev/" + ctrl, "-o", "json"]).stdout)
    idns = json.loads(sh(["nvme", "id-ns", nss[1], "-o", "json"]).stdout)
    sizes = {n: int(sh(["blockdev", "--getsize64", d]).stdout) for n, d in nss.items()}
    emit("connect_" + tag, ctrl=ctrl, state=state, queue_count=qc, out=p.stdout.strip(),
         devices={str(k): v for k, v in nss.items()}, sizes={str(k): v for k, v in sizes.items()},
         id_ctrl={k: idc.get(k) for k in ("cntlid", "subnqn", "mdts", "ioccsz", "iorcsz", "sgls",
                                          "cntrltype", "nn", "oncs", "vwc", "sqes", "cqes",
                                          "mn", "kas", "cmic", "anacap")},
         id_ns={k: idns.get(k) for k in ("nsze", "ncap", "nmic", "anagrpid", "flbas")})
    return ctrl, nss


@step("plain")
def _():
    ctrl, nss = connect_and_check("plain", [])
    dev = nss[1]
    sh(f"mkfs.ext4 -q -F {dev}")
    sh(f"mount {dev} /tmp/mnt")
    sh("dd if=/dev/urandom of=/tmp/mnt/big bs=1M count=24 status=none")
    sh("dd if=/dev/urandom of=/tmp/mnt/mid bs=64k count=7 status=none")
    for i in range(20):
        with open(f"/tmp/mnt/small{i}", "wb") as f:
            f.write(os.urandom(100 + 997 * i))
    sh("sync")
    before = files_sums("/tmp/mnt")
    sh("umount /tmp/mnt")
    sh(f"mount {dev} /tmp/mnt")
    after = files_sums("/tmp/mnt")
    sh("umount /tmp/mnt")
    pattern = os.urandom(1 << 20)
    open("/tmp/pattern", "wb").write(pattern)
    sh(f"dd if=/tmp/pattern of={nss[2]} bs=64k oflag=direct status=none")
    sh(f"dd if={nss[2]} of=/tmp/readback bs=64k count=16 iflag=direct status=none")
    st["sums"] = before
    emit("plain_fs", files=len(before), equal=before == after and len(before) == 22,
         direct_equal=open("/tmp/readback", "rb").read() == pattern)
    p = sh(["nvme", "disconnect", "-n", NQN])
    emit("disconnect_plain", out=p.stdout.strip(),
         gone=wait_for(lambda: controller() is None, 15) is None or controller() is None)


@step("digests")
def _():
    ctrl, nss = connect_and_check("digests", ["-g", "-G"])
    dev = nss[1]
    sh(f"mount {dev} /tmp/mnt")
    again = files_sums("/tmp/mnt")
    sh("dd if=/dev/urandom of=/tmp/mnt/digest bs=1M count=8 status=none")
    sh("sync")
    st["sums"]["digest"] = hashlib.sha256(open("/tmp/mnt/digest", "rb").read()).hexdigest()
    sh("umount /tmp/mnt")
    sh(f"mount {dev} /tmp/mnt")
    final = files_sums("/tmp/mnt")
    sh("umount /tmp/mnt")
    emit("digests_fs", equal_to_plain=all(again.get(k) == v for k, v in st["sums"].items()
                                          if k != "digest"),
         equal=final == st["sums"])
    # a controller reset: the kernel disables (CC.EN=0), then builds a new association
    sh(f"dd if={dev} of=/tmp/before bs=64k count=16 iflag=direct status=none")
    cntlid0 = open(f"/sys/class/nvme/{ctrl}/cntlid").read().strip()
    sh(["nvme", "reset", "/dev/" + ctrl])
    live = wait_for(lambda: open(f"/sys/class/nvme/{ctrl}/state").read().strip() == "live")
    sh(f"dd if={dev} of=/tmp/after bs=64k count=16 iflag=direct status=none")
    emit("reset", live=bool(live), cntlid_before=cntlid0,
         cntlid_after=open(f"/sys/class/nvme/{ctrl}/cntlid").read().strip(),
         same_data=open("/tmp/before", "rb").read() == open("/tmp/after", "rb").read())
    p = sh(["nvme", "disconnect", "-n", NQN])
    emit("disconnect_digests", out=p.stdout.strip(),
         gone=wait_for(lambda: controller() is None, 15) is None or controller() is None)


LIVE_PY = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pynvmetcp.target import (ListenConfig, NamespaceConfig, SubsystemConfig, Target,
                              TargetConfig)
NQN2 = sys.argv[2]
cfg = TargetConfig(listen=[ListenConfig("127.0.0.1", 4421), ListenConfig("127.0.0.1", 4422),
                           ListenConfig("127.0.0.1", 8010, discovery_only=True)],
                   subsystems=[SubsystemConfig(NQN2, namespaces=[NamespaceConfig("mem:32M")])])
with Target.serve(cfg) as t:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "resize":
            t.resize_namespace(NQN2, 1, cmd["size"])
        elif op == "ana":
            t.set_ana_state(NQN2, cmd["port"], 1, cmd["state"])
        elif op == "add_subsystem":
            t.add_subsystem(cmd["nqn"])
        print(json.dumps({"controllers": t.controllers()}), flush=True)
"""


@step("live_changes")
def _():
    """A target driven at runtime (Python API), reached through two ports (two paths): the
    kernel joins them under one multipath head and follows ANA, resize and discovery log changes
    through the asynchronous events."""
    nqn2, nqn3 = NQN + "-live", NQN + "-added"
    open("/tmp/live.py", "w").write(LIVE_PY)
    live = subprocess.Popen([PY, "/tmp/live.py", ROOT, nqn2], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def ask(**cmd):
        live.stdin.write(json.dumps(cmd) + "\n")
        live.stdin.flush()
        return json.loads(live.stdout.readline())["controllers"]

    def ctrl_at(port):
        for d in glob.glob("/sys/class/nvme/nvme*"):
            try:
                if (open(d + "/subsysnqn").read().strip() == nqn2
                        and f"trsvcid={port}" in open(d + "/address").read()):
                    return os.path.basename(d)
            except OSError:
                pass

    def ana_of(ctrl):
        files = glob.glob(f"/sys/class/nvme/{ctrl}/nvme*c*n1/ana_state")
        return open(files[0]).read().strip() if files else None

    def dd_ok(dev):
        data = os.urandom(64 << 10)
        open("/tmp/live_pattern", "wb").write(data)
        sh(f"dd if=/tmp/live_pattern of={dev} bs=64k seek=3 oflag=direct status=none")
        sh(f"dd if={dev} of=/tmp/live_back bs=64k skip=3 count=1 iflag=direct status=none")
        return open("/tmp/live_back", "rb").read() == data

    try:
        assert json.loads(live.stdout.readline())["ready"]
        base = ["-t", "tcp", "-a", "127.0.0.1", "-n", nqn2, "-q", HOSTNQN, "-I", HOSTID,
                "--nr-io-queues", "1"]
        sh(["nvme", "connect", "-s", "4421", "--disable-sqflow"] + base)
        sh(["nvme", "connect", "-s", "4422"] + base)
        sh(["nvme", "discover", "-p", "-t", "tcp", "-a", "127.0.0.1", "-s", "8010", "-q", HOSTNQN,
            "-I", HOSTID])
        armed = wait_for(lambda: (lambda cs: cs if len(cs) == 3 and all(c["aers"] >= 1
                                                                        for c in cs) else None)(
            ask(op="status")), 20)
        c1, c2 = wait_for(lambda: ctrl_at(4421)), wait_for(lambda: ctrl_at(4422))
        heads = wait_for(lambda: sorted(set(namespaces(c1).values()) | set(namespaces(c2).values()))
                         if namespaces(c1) and namespaces(c2) else None)
        dev = heads[0]
        wait_for(lambda: os.path.exists(dev))
        paths = sorted(os.path.basename(p) for c in (c1, c2)
                       for p in glob.glob(f"/sys/class/nvme/{c}/nvme*c*n1"))
        io_ok = [dd_ok(dev)]
        ana_seen = [ana_of(c1), ana_of(c2)]
        window = [kmsg("path 1 ANA inaccessible from here")]
        path1 = os.path.basename(glob.glob(f"/sys/class/nvme/{c1}/nvme*c*n1")[0])
        ask(op="ana", port=1, state="inaccessible")  # path 1 down: I/O goes through path 2
        wait_for(lambda: ana_of(c1) == "inaccessible")
        ana_seen += [ana_of(c1), ana_of(c2)]
        io_ok.append(dd_ok(dev))
        ask(op="ana", port=1, state="optimized")
        wait_for(lambda: ana_of(c1) == "optimized")
        window.append(kmsg("path 1 ANA optimized again"))
        ana_seen += [ana_of(c1), ana_of(c2)]
        size0 = int(sh(["blockdev", "--getsize64", dev]).stdout)
        ask(op="resize", size=64 << 20)
        size1 = wait_for(lambda: (lambda v: v if v == 64 << 20 else None)(
            int(sh(["blockdev", "--getsize64", dev]).stdout)), 20)
        io_ok.append(dd_ok(dev))
        ask(op="add_subsystem", nqn=nqn3)
        def rearmed():
            disc = [c for c in ask(op="status") if c["subnqn"].endswith(".discovery")]
            return disc if disc and disc[0]["events_sent"] >= 1 and disc[0]["aers"] >= 1 else None
        disc = wait_for(rearmed, 20)
        emit("live_changes", ctrls=ask(op="status"), armed=bool(armed), heads=heads, paths=paths,
             ana=ana_seen, ana_window=window, ana_path=path1, io_ok=io_ok, size0=size0, size1=size1,
             disc_event=bool(disc))
    finally:
        sh(["nvme", "disconnect", "-n", nqn2], check=False)
        sh(["nvme", "disconnect", "-n", "nqn.2014-08.org.nvmexpress.discovery"], check=False)
        live.stdin.close()
        live.wait(timeout=30)

@step("target_stop")
def _():
    target.send_signal(signal.SIGTERM)
    rc = target.wait(timeout=30)
    log.close()
    text = open(os.path.join(OUT, "target.log")).read()
    emit("target_stop", rc=rc, traceback="Traceback" in text,
         digests_negotiated="hdgst=True ddgst=True" in text,
         shutdowns=text.count(": shutdown"), refused_host=STRANGER in text)


@step("backing_file")
def _():
    sh("mount -o loop,ro /tmp/disk.img /tmp/mnt")
    sums = files_sums("/tmp/mnt")
    sh("umount /tmp/mnt")
    emit("backing_file", equal=sums == st.get("sums"), files=len(sums))


dmesg = sh("dmesg", check=False).stdout.splitlines()
emit("dmesg", lines=[line for line in dmesg
                     if "nvme" in line.lower() or "pynvmetcp-test" in line][-200:])
emit("done")
'''

GUEST_SH = f"""
set -e
OUT="$1"
cat > /tmp/guest.py <<'PYEOF'
{GUEST_PY}
PYEOF
cd {ROOT}
PYTHONPATH={ROOT} {ROOT}/.venv/bin/python /tmp/guest.py {ROOT} {NQN} {HOSTNQN} {HOSTID} \\
    {STRANGER} {STRANGER_ID} "$OUT"
"""


vmrun.part(__name__, lambda work: GUEST_SH.replace('OUT="$1"', f'OUT="{work}"'))


@pytest.fixture(scope="module")
def checks(vm_boot):
    log = vm_boot.result(__name__).workdir / "target.log"
    found = vmrun.part_checks(vm_boot, __name__, extra=f"(target log in {log})")
    found = {name: recs[-1] for name, recs in found.items()}
    errors = {k: v["error"] for k, v in found.items() if "error" in v}
    tail = log.read_text()[-3000:] if log.exists() else "(no target log)"
    assert not errors, f"guest steps failed: {errors}\ntarget log:\n{tail}"
    return found


def test_discovery_lists_the_subsystem_for_the_allowed_host_only(checks):
    entries = checks["discover"]["entries"]
    assert [e for e in entries if e[0] == "nvme subsystem"] == [
        ["nvme subsystem", NQN, "127.0.0.1", "4420"]]
    assert any(e[0] == "current discovery subsystem" and e[3] == "8009" for e in entries)
    assert [e for e in checks["discover_stranger"]["entries"] if e[0] == "nvme subsystem"] == []


def test_a_host_outside_the_allow_list_cannot_connect(checks):
    assert checks["stranger_refused"]["rc"] != 0 and checks["stranger_refused"]["ctrl"] is None


@pytest.mark.parametrize("tag", ["plain", "digests"])
def test_kernel_connects_with_two_io_queues(checks, tag):
    c = checks["connect_" + tag]
    assert c["state"] == "live" and c["queue_count"] == 3  # admin + 2 I/O queues
    idc = c["id_ctrl"]
    assert idc["subnqn"] == NQN and idc["cntrltype"] == 1 and idc["mdts"] == 8
    assert idc["ioccsz"] == (64 + 131072) // 16 and idc["iorcsz"] == 1
    assert idc["sqes"] == 0x66 and idc["cqes"] == 0x44 and idc["sgls"] & 1
    assert idc["oncs"] & 0b1101 == 0b1101 and idc["vwc"] & 1 and idc["nn"] == 1024
    assert idc["mn"].strip() == "pynvmetcp" and idc["cmic"] & 0b1000
    assert c["sizes"] == {"1": 256 << 20, "2": 64 << 20}
    assert c["id_ns"]["nsze"] == 256 << 20 >> 9 and c["id_ns"]["anagrpid"] == 1


def test_filesystem_survives_remount_and_direct_io(checks):
    fs = checks["plain_fs"]
    assert fs["equal"] and fs["files"] == 22 and fs["direct_equal"]


def test_digests_read_back_what_was_written_without_them(checks):
    fs = checks["digests_fs"]
    assert fs["equal_to_plain"] and fs["equal"]
    assert checks["target_stop"]["digests_negotiated"]


def test_controller_reset_builds_a_new_association(checks):
    r = checks["reset"]
    assert r["live"] and r["same_data"] and r["cntlid_before"] != r["cntlid_after"]


def test_disconnect_removes_the_controller(checks):
    for tag in ("plain", "digests"):
        d = checks["disconnect_" + tag]
        assert "disconnected 1 controller" in d["out"] and d["gone"]


def test_target_stops_cleanly_after_orderly_shutdowns(checks):
    stop = checks["target_stop"]
    assert stop["rc"] == 0 and not stop["traceback"]
    assert stop["shutdowns"] >= 2 and stop["refused_host"]


def test_data_reached_the_backing_file(checks):
    assert checks["backing_file"]["equal"] and checks["backing_file"]["files"] == 23


def test_kernel_follows_live_changes_through_async_events(checks):
    live = checks["live_changes"]
    assert live["armed"]  # every controller (two paths, one persistent discovery) armed an AER
    assert len(live["heads"]) == 1 and len(live["paths"]) == 2  # one multipath head, two paths
    # ANA change: path 1 inaccessible while path 2 stays optimized, then back
    assert live["ana"] == ["optimized", "optimized", "inaccessible", "optimized",
                           "optimized", "optimized"]
    assert live["io_ok"] == [True, True, True]  # I/O kept working on the other path
    assert live["size0"] == 32 << 20 and live["size1"] == 64 << 20  # NS attribute changed
    assert live["disc_event"]  # discovery log change to the persistent discovery controller
    io = [c for c in live["ctrls"] if not c["subnqn"].endswith(".discovery")]
    assert len(io) == 2 and all(c["events_sent"] >= 1 and c["aers"] >= 1 for c in io)


def _stamp(line: str) -> float:
    return float(line[1:line.index("]")]) if line.startswith("[") else -1.0


def _after_removal(lines: list[str]) -> set[str]:
    """Reads that race a controller's removal fail by design ("no available path"): a reader
    that was still probing the disk when `nvme disconnect` ran. Lines within half a second after
    a "Removing ctrl" line of that shape are not faults of the target."""
    removed = [_stamp(line) for line in lines if "Removing ctrl" in line]
    return {line for line in lines
            if ("no available path - failing I/O" in line or "Buffer I/O error" in line)
            and any(0 <= _stamp(line) - t < 0.5 for t in removed)}


REQ_RAHEAD = 1 << 19  # Linux 6.1 (the guest's Debian kernel): enum req_flag_bits, __REQ_RAHEAD
_PATH_ANA_ERROR = re.compile(r"(nvme\d+c\d+n\d+): I/O Cmd\(0x2\) @ LBA (\d+), \d+ blocks, "
                             r"I/O Error \(sct 0x3 / sc 0x[23]\)")
_BLOCK_READ_ERROR = re.compile(r"I/O error, dev (nvme\d+c\d+n\d+), sector (\d+) "
                               r"op 0x0:\(READ\) flags (0x[0-9a-f]+)")


def _readahead_on_inaccessible_path(lines: list[str], window: list[str], path: str) -> set[str]:
    """Readahead is optional I/O, so the kernel fails it fast instead of failing it over to the
    other path: a readahead sent down ``path`` (path 1's disk) between the target's ANA change
    and the host's reading of the ANA log returns SCT 3h / SC 2h (inaccessible) or 3h
    (transition) and is logged as an I/O error. A buffered reader such as udev's probe after
    each dd (udev watches block devices closed after a write) reads through the page cache and
    can land there. Only such reads on that path between the step's two kernel-log markers are
    the kernel's design rather than a fault; any other read error, on another path or outside
    the window, stays in the log the test checks."""
    inside, driver, block = False, {}, {}
    for line in lines:
        if window[0] in line:
            inside = True
        elif window[1] in line:
            inside = False
        elif inside and (m := _PATH_ANA_ERROR.search(line)) and m[1] == path:
            driver.setdefault((m[1], m[2]), []).append(line)
        elif (inside and (m := _BLOCK_READ_ERROR.search(line)) and m[1] == path
              and int(m[3], 16) & REQ_RAHEAD):
            block.setdefault((m[1], m[2]), []).append(line)  # 512-byte LBAs: LBA = sector
    return {line for read in driver.keys() & block.keys() for line in driver[read] + block[read]}


def test_readahead_filter_keeps_every_other_error():
    """The filter above on the lines one CI run printed, and on variants it must not excuse."""
    window = ["pynvmetcp-test: path 1 ANA inaccessible from here",
              "pynvmetcp-test: path 1 ANA optimized again"]
    nvme = ("[  468.069850] nvme0c0n1: I/O Cmd(0x2) @ LBA 65472, 8 blocks, "
            "I/O Error (sct 0x3 / sc 0x2) ")
    block = ("[  468.070354] I/O error, dev nvme0c0n1, sector 65472 op 0x0:(READ) "
             "flags 0x4080700 phys_seg 1 prio class 2")
    opened, closed = f"[  467.9] {window[0]}", f"[  469.0] {window[1]}"

    def excused(*lines):
        return _readahead_on_inaccessible_path(list(lines), window, "nvme0c0n1")

    assert excused(opened, nvme, block, closed) == {nvme, block}
    again = [line.replace("468.0", "468.5") for line in (nvme, block)]  # the same read twice
    assert excused(opened, nvme, block, *again, closed) == {nvme, block, *again}
    assert not excused(opened, closed, nvme, block)  # after the window
    plain = block.replace("0x4080700", "0x4000000")  # no readahead: failover should have run
    assert not excused(opened, nvme, plain, closed)
    media = nvme.replace("sct 0x3 / sc 0x2", "sct 0x2 / sc 0x81")  # a media error, not a path
    assert not excused(opened, media, block, closed)
    other = [line.replace("nvme0c0n1", "nvme1c1n1") for line in (nvme, block)]  # path 2
    assert not excused(opened, *other, closed)


def test_kernel_log_is_clean(checks):
    lines = checks["dmesg"]["lines"]
    window = checks["live_changes"]["ana_window"]
    assert all(any(marker in line for line in lines) for marker in window)
    excused = _after_removal(lines) | _readahead_on_inaccessible_path(
        lines, window, checks["live_changes"]["ana_path"])
    lines = [line for line in lines if line not in excused]
    # the refused stranger is the one expected complaint: SCT 1 / SC 84h with DNR = 0x4184
    refusal = [line for line in lines if "is not allowed" in line and STRANGER in line]
    assert refusal and any("failed to connect queue: 0 ret=16772" in line for line in lines)
    bad = [line for line in lines
           if any(w in line.lower() for w in ("error", "fail", "timeout", "reset", "warn",
                                              "i/o error", "mismatch", "invalid",
                                              "not supported", "not allowed"))
           and line not in refusal and "ret=16772" not in line
           and not line.endswith("resetting controller")]  # the reset we asked for
    assert not bad, "\n".join(lines)
    assert any("new ctrl" in line and NQN in line for line in lines)
    assert any("capacity change" in line for line in lines)
