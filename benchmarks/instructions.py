"""Question: how many machine instructions does the host engine spend per 4 KiB read at queue
depth 32, against the least a Python program does with the same bytes?

Why it matters: on the machines here wall-clock results of one tree swing by ±20 % from run to
run (benchmarks/RESULTS.md), so a change worth 5 % cannot be told from noise by timing.
``valgrind --tool=callgrind`` counts the instructions a process executes: the same count for the
same program and inputs, whatever else the machine does. Each side runs in its own interpreter
with the measured rounds, and its count minus that of a run without rounds (one such run serves
the host sides, which import the same modules; each target its own), divided by the reads, is its
cost per read (start-up and imports cancel out).

* candidate: the sans-I/O host engine (``protocol.HostQueue``) submits 32 reads, encodes their
  CapsuleCmds, then decodes the controller's 32 C2HData + CapsuleResp from a receive buffer
  filled as ``recv_into`` would, each payload landing in the caller's buffer, and completes them;
* baseline: the bare minimum on the same bytes — ``struct`` packs each command's header and
  unpacks each received header, the payload is copied into the same buffer; no validation,
  no state, no objects.

Then each side of a 4 KiB read at queue depth 1, where benchmarks/floor.py finds the gap to
the raw socket (whatever a side costs is paid in series there):

* host: the blocking host's queue (``SyncQueue`` and its engine) reads over a socketpair whose
  other end already holds the answer, against ``_peers.BareHost`` doing the same;
* target: callgrind on the target process, read by a ``BareHost`` from outside it (at QD1 one
  loop turn per read), against ``_peers.BARE_TARGET`` read the same way; the target runs on the
  loop it picks (uvloop's) and once more on the standard loop (``instructions_qd1_target_std_k``).

Last lines: ``RATIO instructions_engine_vs_struct=…`` (baseline / engine instructions; 1 would
be as cheap as the bare loop), ``RATIO instructions_per_read_k=…`` (thousands per read), and
``instructions_qd1_host_k`` / ``instructions_qd1_target_k`` with their ``…_vs_bare`` ratios.
Recorded (benchmarks/RESULTS.md, 2026-11-30): engine 62.4k per read (98.1k before the third
session that day); at QD1 the host queue 89.3k (100.2k before the fourth session), the target
92.8k (100.5k before it).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import Report, parse_args  # noqa: E402
from benchmarks._peers import (BARE_TARGET, NQN, BareHost, start_peer,  # noqa: E402
                              target_command)

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 32

# The program each side runs under callgrind: argv = side, rounds to run, rounds to prepare (the
# same in every run, so preparing them cancels out too; every side imports the same modules, so
# one run without rounds serves them all).
PROGRAM = r'''
import sys
sys.path.insert(0, ROOT)
import socket
from benchmarks._peers import BareHost
from benchmarks.codec import CH, HDR_CMD, RESP_PSH, XFER_PSH
from pynvmetcp.host import commands as C
from pynvmetcp.host.procedures import read_into
from pynvmetcp.host.sync import SyncQueue
from pynvmetcp.protocol import ControllerQueue, HostQueue
from pynvmetcp.wire import codec

side, rounds, prepared = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
D = DEPTH
bufs = [bytearray(4096) for _ in range(D)]
sqes = [C.read(1, i * 8, 8) for i in range(D)]
payload = bytes(4096)


def wire(q):
    return codec.encode(q.data_to_send())


host = HostQueue(1, queue_size=129, icd_size=8192)
ctrl = ControllerQueue(icd_size=8192)
host.initiate()
ctrl.receive(wire(host))
host.receive(wire(ctrl))
ctrl.configure(1, 128)
start = host._next_cid
streams = []
for r in range(prepared):
    parts = []
    for i in range(D):
        cid = (start + r * D + i) & 0xFFFF
        parts += codec.c2h_data(cid, 0, payload, last=True)
        parts += codec.capsule_resp(cid, 0, sqid=1)
    streams.append(codec.encode(parts))
size = len(streams[0]) // D  # one read's C2HData + CapsuleResp, for the QD1 sides: cut here,
answers = [stream[i * size:(i + 1) * size] for stream in streams for i in range(D)]  # in every run


def engine(stream):
    for i in range(D):
        host.submit(sqes[i], read_into=bufs[i])
    host.data_to_send()
    mv = memoryview(stream)
    off = done = 0
    while off < len(mv):
        buf = host.get_buffer()
        k = min(len(buf), len(mv) - off)
        buf[:k] = mv[off:off + k]
        off += k
        done += len(host.buffer_updated(k))
    assert done == D


def bare(stream):
    for i in range(D):
        HDR_CMD.pack(4, 0, 72, 0, 72, sqes[i])
    mv = memoryview(stream)
    off, i = 0, 0
    while off < len(mv):
        t, flags, hlen, pdo, plen = CH.unpack_from(mv, off)
        if t == 7:
            XFER_PSH.unpack_from(mv, off + 8)
            bufs[i][:] = mv[off + pdo:off + plen]
            i += 1
        else:
            RESP_PSH.unpack_from(mv, off + 8)
        off += plen


def queue_qd1():
    """The blocking host's queue, one read at a time over a socketpair."""
    near, far = socket.socketpair()
    sink = bytearray(1 << 16)
    if side == "queue":
        q = SyncQueue(near, host, 10.0)
        view = memoryview(bufs[0])
        for r in range(rounds * D):
            far.send(answers[r])
            q.execute(read_into(1, 0, 8, view))  # what ns.read_into hands the queue
            far.recv_into(sink)
    else:
        bare = BareHost(near)
        view = memoryview(bufs[0])
        for r in range(rounds * D):
            far.send(answers[r])
            bare.read(0, view)
            far.recv_into(sink)


if side in ("queue", "queue-bare"):
    queue_qd1()
else:
    run = engine if side == "engine" else bare
    for s in streams[:rounds]:
        run(s)
'''

# A target under callgrind, read at QD1 by a BareHost from this process: the instructions of
# ``reads`` reads minus those of a run without them, per read.
# (command, environment, how it is stopped once the host is done): the target on the loop it
# picks (uvloop's), on the standard loop, and the bare target. The targets stop cleanly on
# SIGINT; the bare target (None) serves its one connection and exits when the host closes it
# (stopped by SIGINT, its main thread blocked in accept() was seen not to wake under valgrind).
TARGETS = {
    "target": (lambda port: target_command(port, "mem:16M"), {}, signal.SIGINT),
    "target-std": (lambda port: target_command(port, "mem:16M"), {"PYNVMETCP_LOOP": "asyncio"},
                   signal.SIGINT),
    "target-bare": (lambda port: [sys.executable, "-c", BARE_TARGET, str(port), str(16 << 20),
                                  "once"], {}, None),
}


CALLGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
ENV = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run


def _collected(returncode: int, stderr: str) -> int:
    found = re.search(r"Collected : (\d+)", stderr)
    if returncode != 0 or not found:
        raise RuntimeError(f"callgrind run failed: {stderr.strip()[-500:]}")
    return int(found[1])


def instructions(program: Path, side: str, rounds: int, prepared: int) -> int:
    """Instructions callgrind counted for one run of ``program``."""
    proc = subprocess.run([*CALLGRIND, sys.executable, str(program), side, str(rounds),
                           str(prepared)], capture_output=True, text=True, timeout=900, env=ENV)
    return _collected(proc.returncode, proc.stderr)


def target_instructions(kind: str, reads: int) -> int:
    """Instructions of one target process run serving ``reads`` QD1 4 KiB reads."""
    import pynvmetcp

    command, env, stop = TARGETS[kind]
    port, proc = start_peer(lambda port: [*CALLGRIND, *command(port)], env={**ENV, **env},
                            timeout=120,  # start-up under callgrind takes seconds
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        buf = memoryview(bytearray(4096))
        with contextlib.ExitStack() as stack:
            if kind == "target-bare":
                host = BareHost.connect(port)
                stack.callback(host.sock.close)
            else:  # the real Connect first; then its I/O queue is read bare
                ctrl = stack.enter_context(pynvmetcp.connect(
                    "127.0.0.1", port, NQN, nr_io_queues=1, kato=0, ctrl_loss_tmo=0, timeout=60))
                host = BareHost(ctrl.io[0].sock)
            for _ in range(reads):
                host.read(0, buf)
        if stop is not None:
            proc.send_signal(stop)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return _collected(0 if proc.returncode in (0, -signal.SIGINT, 130) else proc.returncode,
                      err)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    if shutil.which("valgrind") is None:
        print("valgrind unavailable: install it (Debian: valgrind) to count instructions")
        return 2
    report = Report("instructions", "instructions per 4 KiB read at QD32: host engine vs the "
                    "bare struct loop (callgrind)", args,
                    method="instructions counted by valgrind --tool=callgrind, a run with the "
                           "rounds minus one without")
    rounds = max(2, int((10 if args.quick else 200) * args.scale))
    # Stopping a target costs a slightly different count each run (where the signal lands):
    # enough reads that this is noise per read even in a quick run.
    reads = max(rounds * DEPTH // 4, 1000)
    # Counts do not depend on timing, so the eleven callgrind runs share the cores: most of each
    # is the interpreter's start-up under valgrind, run after run.
    with tempfile.TemporaryDirectory() as tmp, \
            ThreadPoolExecutor(max(1, len(os.sched_getaffinity(0)))) as pool:
        program = Path(tmp) / "program.py"
        program.write_text(f"ROOT = {str(ROOT)!r}\nDEPTH = {DEPTH}\n" + PROGRAM)
        empty = pool.submit(instructions, program, "engine", 0, rounds)
        sides = [pool.submit(instructions, program, side, rounds, rounds)
                 for side in ("engine", "bare", "queue", "queue-bare")]
        targets = [(pool.submit(target_instructions, kind, reads),
                    pool.submit(target_instructions, kind, 0))
                   for kind in ("target", "target-std", "target-bare")]
        engine, bare, queue, queue_bare = ((f.result() - empty.result()) / (rounds * DEPTH)
                                           for f in sides)
        target, target_std, target_bare = ((full.result() - idle.result()) / reads
                                           for full, idle in targets)
    report.note(f"host engine: {engine / 1e3:.1f}k instructions per read; bare struct loop: "
                f"{bare / 1e3:.1f}k ({rounds} rounds of {DEPTH})")
    report.note(f"QD1, host queue: {queue / 1e3:.1f}k per read, bare host {queue_bare / 1e3:.1f}k;"
                f" target: {target / 1e3:.1f}k (on the standard loop {target_std / 1e3:.1f}k),"
                f" bare target {target_bare / 1e3:.1f}k ({reads} reads)")
    report.ratio("instructions_engine_vs_struct", bare / engine)
    report.ratio("instructions_per_read_k", engine / 1e3)
    report.ratio("instructions_qd1_host_k", queue / 1e3)
    report.ratio("instructions_qd1_host_vs_bare", queue_bare / queue)
    report.ratio("instructions_qd1_target_k", target / 1e3)
    report.ratio("instructions_qd1_target_vs_bare", target_bare / target)
    report.ratio("instructions_qd1_target_std_k", target_std / 1e3)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
