"""Runs inside the kernel VM: two pynvmetcp target processes serve one file-backed namespace (same
subsystem NQN, UUID and serial, disjoint CNTLID ranges; ANA optimized on node A, non-optimized on
node B); the kernel host joins them under one native-multipath head; a writer keeps writing
self-checking blocks with O_DIRECT while node A is killed, then restarted. Prints JSON lines."""
from __future__ import annotations

import glob
import hashlib
import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import threading
import time

ROOT = sys.argv[1]
sys.path.insert(0, ROOT)
from tests.polling import poll  # noqa: E402
NQN = "nqn.2024-01.io.pynvmetcp:multipath"
UUID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555"
BLOCK = 4096
BLOCKS = 2048


def emit(check, **kw):
    print(json.dumps({"check": check, **kw}), flush=True)


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True)


def node(name, port, ana_state, cntlids):
    cfg = f"/tmp/{name}.toml"
    with open(cfg, "w") as f:
        f.write(f"""
[[listen]]
address = "127.0.0.1:{port}"
[listen.ana]
1 = "{ana_state}"

[[subsystem]]
nqn = "{NQN}"
serial = "pynvmetcp-mp-0001"
cntlid_min = {cntlids[0]}
cntlid_max = {cntlids[1]}
[[subsystem.namespace]]
path = "/tmp/shared.img"
uuid = "{UUID}"
ana_group = 1
""")
    log = open(f"/tmp/{name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "pynvmetcp", "target", "--config", cfg],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def serving(name, proc):
    """Wait for the node's own "serving" line (printed once it listens). Under emulation on a
    loaded machine a Python start alone has taken over 20 s, so the bound is generous; a node
    that exits instead is reported with its log, not waited for."""
    t0 = time.monotonic()
    up = poll(lambda: proc.poll() is not None or "serving" in open(f"/tmp/{name}.log").read(), 300)
    log = open(f"/tmp/{name}.log").read()
    emit(f"node_{name}", serving="serving" in log, exit=proc.poll(),
         seconds=round(time.monotonic() - t0, 1), log=log[-400:] if not up or proc.poll() is not None else "")


def block(n, gen):
    head = struct.pack("<QQ", n, gen)
    body = head + bytes(BLOCK - 16 - 32)
    return body + hashlib.sha256(body).digest()


def ana_states():
    return sorted(open(p).read().strip() for p in glob.glob("/sys/class/nvme/nvme*/nvme*c*n*/ana_state"))


def main():
    with open("/tmp/shared.img", "wb") as f:
        f.truncate(BLOCKS * BLOCK)
    a = node("a", 4420, "optimized", (1, 99))
    b = node("b", 4421, "non-optimized", (100, 199))
    serving("a", a)
    serving("b", b)
    for port in (4420, 4421):
        r = sh(f"nvme connect -t tcp -a 127.0.0.1 -s {port} -n {NQN} -q {HOSTNQN} "
               f"--reconnect-delay 1 --ctrl-loss-tmo 120")
        emit(f"connect_{port}", rc=r.returncode, err=r.stderr.strip()[-300:])
    # the kernel scans namespaces and reads the ANA log after the connect returns; under
    # emulation on a loaded machine that has taken seconds, so the bounds are generous
    dev = poll(lambda: [d for d in glob.glob("/dev/nvme*n1") if "c" not in
                        os.path.basename(d)[4:]], 120)
    emit("paths", dev=dev, ana=poll(lambda: len(ana_states()) == 2 and ana_states(), 120))
    dev = dev[0]
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    buf = mmap.mmap(-1, BLOCK)
    acked: dict[int, int] = {}
    errors: list[str] = []
    stop = threading.Event()
    count = [0]

    def writer():
        gen = 0
        while not stop.is_set():
            gen += 1
            n = gen % BLOCKS
            buf.seek(0)
            buf.write(block(n, gen))
            try:
                os.pwrite(fd, buf, n * BLOCK)
                acked[n] = gen
                count[0] += 1
            except OSError as exc:
                errors.append(str(exc))

    t = threading.Thread(target=writer)
    t.start()
    poll(lambda: count[0] > 200, 120)
    before = count[0]
    a.send_signal(signal.SIGKILL)  # the optimized node dies mid-I/O
    a.wait()
    t0 = time.monotonic()
    poll(lambda: count[0] > before + 300, 120)
    emit("after_kill", writes_before=before, writes_after=count[0], errors=errors[:5],
         continued_in=round(time.monotonic() - t0, 2), ana=ana_states())
    a = node("a", 4420, "optimized", (1, 99))
    serving("a", a)
    back = poll(lambda: ana_states().count("optimized") == 1 and
                sh("cat /sys/class/nvme/nvme*/state").stdout.split().count("live") >= 2, 120)
    mid = count[0]
    poll(lambda: count[0] > mid + 200, 120)
    stop.set()
    t.join()
    emit("restored", path_back=bool(back), ana=ana_states(), writes=count[0], errors=errors[:5])
    bad = 0
    for n, gen in acked.items():
        buf.seek(0)
        os.preadv(fd, [buf], n * BLOCK)
        if bytes(buf[:BLOCK]) != block(n, gen):
            bad += 1
    emit("verify", blocks=len(acked), bad=bad)
    os.close(fd)
    sh(f"nvme disconnect -n {NQN}")
    for p in (a, b):
        p.terminate()
        p.wait(10)
    emit("done")


main()
