"""Question: what does the cffi passthrough cost per call, next to ``fcntl.ioctl`` on the same request?

Why it matters: the kernel fallback issues every passthrough command (identify, log pages,
discovery paging, passthrough I/O) through the compiled cffi module, whose point is that the
struct layouts and ioctl numbers come from the compiler reading <linux/nvme_ioctl.h>.
``fcntl.ioctl`` with a hand-packed struct is the no-compiler alternative; this measures what the
checked path costs per call next to it. (Measured so far: cffi 1.1-1.3× the fcntl time — about
0.05 µs more per bare call on the host, ~20 % more per Identify in the emulated VM — small next to
a command's round trip, so correctness, not speed, is the reason for cffi.)

Two modes:

* ``--device /dev/nvmeN`` (in the kernel VM, as root): Identify Controller (4 KiB) by
  NVME_IOCTL_ADMIN64_CMD, built from the same 64-byte SQE both ways — cffi through
  ``pynvmetcp.kernel.passthru.passthru`` vs ``struct.pack`` + ``fcntl.ioctl`` + ``struct.unpack``.
* otherwise a harmless ioctl of the same kind: FIONREAD on a pipe (pointer argument, integer
  result), cffi wrapper vs ``fcntl.ioctl`` with a mutable buffer — the pure call overhead.

Rounds are interleaved (the order alternates each round) and the median per-call time is
reported; the last line is ``RATIO ioctl_cffi_vs_fcntl=<cffi time / fcntl time>`` (< 1: cffi faster).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# struct nvme_passthru_cmd64: opcode flags rsvd1 nsid cdw2 cdw3 metadata addr metadata_len
# data_len cdw10..cdw15 timeout_ms rsvd2 result (80 bytes)
_CMD64 = struct.Struct("<BBHIIIQQII6IIIQ")
assert _CMD64.size == 80


def _fcntl_identify(fd: int, request: int, sqe: bytes, buf) -> tuple[int, int]:
    """The no-cffi way: pack the struct from the SQE, ioctl, unpack the result."""
    import ctypes

    opcode, _flags, _cid, nsid, cdw2, cdw3 = struct.unpack_from("<BBHIII", sqe)
    cdw = struct.unpack_from("<6I", sqe, 40)
    addr = ctypes.addressof(buf)
    raw = bytearray(_CMD64.pack(opcode, 0, 0, nsid, cdw2, cdw3, 0, addr, 0, len(buf), *cdw,
                                0, 0, 0))
    rc = fcntl.ioctl(fd, request, raw, True)
    return rc, _CMD64.unpack(raw)[-1]


def _time(fn: Callable[[], object], calls: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - t0) / calls


def run(variants: dict[str, Callable[[], object]], rounds: int, calls: int) -> dict[str, float]:
    """Interleaved rounds: each round times every variant, in alternating order."""
    names = list(variants)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for fn in variants.values():  # warm up (imports, first faults, caches)
        _time(fn, max(calls // 10, 1))
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            samples[name].append(_time(variants[name], calls))
    return {n: statistics.median(s) for n, s in samples.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", help="an NVMe controller character device, e.g. /dev/nvme0")
    ap.add_argument("--quick", action="store_true", help="few rounds (smoke test)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--calls", type=int)
    ap.add_argument("--json", help="also write the medians to this file")
    args = ap.parse_args(argv)

    try:
        from pynvmetcp.kernel.passthru import native, passthru
        mod = native()
    except Exception as exc:  # noqa: BLE001 - say why and stop
        print(f"cffi module unavailable: {exc}")
        print("RATIO ioctl_cffi_vs_fcntl=nan")
        return 1
    ffi, lib = mod.ffi, mod.lib

    if args.device:
        from pynvmetcp.host import commands as C
        from pynvmetcp.spec.opcodes import Cns

        rounds = args.rounds or (5 if args.quick else 21)
        calls = args.calls or (50 if args.quick else 500)
        fd = os.open(args.device, os.O_RDWR)
        sqe = C.identify(Cns.CONTROLLER)
        cbuf = bytearray(4096)
        import ctypes
        fbuf = (ctypes.c_char * 4096)()
        what = f"Identify Controller on {args.device} (NVME_IOCTL_ADMIN64_CMD, 4 KiB)"

        def cffi_call():
            passthru(fd, sqe, admin=True, read_into=cbuf)

        def fcntl_call():
            _fcntl_identify(fd, lib.NVME_IOCTL_ADMIN64_CMD, sqe, fbuf)

        cffi_call()
        rc, _ = _fcntl_identify(fd, lib.NVME_IOCTL_ADMIN64_CMD, sqe, fbuf)
        if rc != 0 or bytes(fbuf) != bytes(cbuf):
            print(f"the two paths disagree (rc={rc})")
            return 1
    else:
        rounds = args.rounds or (5 if args.quick else 31)
        calls = args.calls or (2000 if args.quick else 50000)
        fd, wfd = os.pipe()
        os.write(wfd, b"x" * 17)
        out = ffi.new("int *")
        fbuf = bytearray(4)
        what = "FIONREAD on a pipe (no NVMe device: pure call overhead)"

        call, ioctl, req = lib.pynvme_ioctl_ptr, fcntl.ioctl, lib.FIONREAD

        def cffi_call():
            if call(fd, req, out) < 0:
                raise OSError("ioctl")

        def fcntl_call():
            ioctl(fd, req, fbuf, True)

        cffi_call()
        fcntl_call()
        if out[0] != 17 or struct.unpack("<i", fbuf)[0] != 17:
            print("the two paths disagree")
            return 1

    medians = run({"cffi": cffi_call, "fcntl": fcntl_call}, rounds, calls)
    os.close(fd)
    ratio = medians["cffi"] / medians["fcntl"]
    print(f"request: {what}")
    print(f"rounds: {rounds} × {calls} calls, interleaved; median ns per call")
    print(f"{'cffi':>8}: {medians['cffi']:10.0f} ns")
    print(f"{'fcntl':>8}: {medians['fcntl']:10.0f} ns")
    if args.json:
        Path(args.json).write_text(json.dumps({"request": what, "rounds": rounds,
                                               "calls": calls, "median_ns": medians,
                                               "ratio": ratio}, indent=1))
    print(f"RATIO ioctl_cffi_vs_fcntl={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
