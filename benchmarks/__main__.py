"""Run every benchmark module (``benchmarks/NAME.py``), each in its own interpreter, and repeat
their ``RATIO`` lines at the end.

    python -m benchmarks [--quick] [--only NAME[,NAME…]] [--skip NAME[,NAME…]]

Exit status 0 when every module exited 0; a module that fails is reported and the others still run.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def modules() -> list[str]:
    """The benchmark scripts: every benchmarks/*.py not starting with an underscore."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run of every module")
    ap.add_argument("--only", help="comma-separated module names to run")
    ap.add_argument("--skip", help="comma-separated module names to leave out")
    args = ap.parse_args(argv)
    names = modules()
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            ap.error(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(names)})")
        names = [n for n in names if n in wanted]
    if args.skip:
        names = [n for n in names if n not in args.skip.split(",")]

    ratios: list[tuple[str, str]] = []
    failed: list[str] = []
    for name in names:
        cmd = [sys.executable, "-m", f"benchmarks.{name}"] + (["--quick"] if args.quick else [])
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=HERE.parent, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        sys.stdout.write(proc.stdout)
        took = time.monotonic() - t0
        print(f"=== {name}: exit {proc.returncode} in {took:.1f} s", flush=True)
        ratios += [(name, line) for line in proc.stdout.splitlines() if line.startswith("RATIO ")]
        if proc.returncode != 0:
            failed.append(name)

    print("=== summary")
    for name, line in ratios:
        print(f"{line}")
    if not args.quick and not args.only and not args.skip:
        write_results(ratios, failed)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


#: Each goal of the benchmark issue: (ratio name, comparison, threshold, what it means).
GOALS = [
    ("codec_decode_vs_struct", ">=", 0.5, "hot-PDU decode rate vs plain struct"),
    ("codec_encode_vs_struct", ">=", 0.5, "hot-PDU encode rate vs plain struct"),
    ("digest_vs_memcpy_64k", ">=", 0.5, "CRC32C vs memcpy at 64 KiB"),
    ("digest_vs_memcpy_1m", ">=", 0.5, "CRC32C vs memcpy at 1 MiB"),
    ("throughput_read_vs_raw", ">=", 0.8, "128 KiB sequential read (8 deep) vs raw socket stream"),
    ("throughput_write_vs_raw", ">=", 0.8,
     "128 KiB sequential write (8 deep) vs raw socket stream"),
    ("throughput_read_qd1_vs_round_trip", "info", 0.0,
     "128 KiB read at QD1 vs a raw round trip of 128 KiB"),
    ("throughput_write_qd1_vs_round_trip", "info", 0.0,
     "128 KiB write at QD1 vs a raw round trip of 128 KiB"),
    ("qd1_latency_p50_vs_raw", ">=", 1 / 1.3, "QD1 4 KiB read latency ≤ 1.3× raw round trip "
                                              "(as a rate ratio: ≥ 0.77)"),
    ("qd1_sqflow_disabled_vs_raw", "info", 0.0,
     "the same QD1 read on a connection with SQ flow control disabled (one PDU per read)"),
    ("iops_qd32_per_core", ">=", 100.0, "4 KiB reads at QD32, thousands of IOPS per host core"),
    ("asyncio_vs_blocking_qd32", ">=", 0.9,
     "asyncio host (on uvloop, as installed) vs blocking host at QD32"),
    ("asyncio_std_vs_blocking_qd32", "info", 0.0,
     "asyncio host on the standard event loop vs blocking host at QD32"),
    ("scale_iops_64_vs_1", ">=", 0.9, "aggregate IOPS with 64 hosts vs 1 (flat, not falling)"),
    ("ioctl_cffi_vs_fcntl", "info", 0.0, "cffi passthrough call vs fcntl.ioctl"),
    ("qd1_floor_vs_raw", "info", 0.0,
     "leanest Python NVMe/TCP pair (no checks) vs raw, QD1 4 KiB: the ceiling here"),
    ("qd1_host_vs_floor", "info", 0.0, "pynvmetcp host queue vs bare host, both on a bare target"),
    ("qd1_target_vs_floor", "info", 0.0, "pynvmetcp target vs bare target, both for a bare host"),
    ("read128_floor_vs_raw", "info", 0.0,
     "leanest Python NVMe/TCP pair vs raw stream, 128 KiB 8 deep: the ceiling here"),
    ("read128_host_vs_floor", "info", 0.0, "pynvmetcp host queue vs bare host, 128 KiB 8 deep"),
    ("read128_target_vs_floor", "info", 0.0, "pynvmetcp target vs bare target, 128 KiB 8 deep"),
    ("instructions_per_read_k", "info", 0.0,
     "host engine, thousands of instructions per 4 KiB read at QD32 (callgrind: no noise)"),
    ("instructions_engine_vs_struct", "info", 0.0,
     "instructions of the bare struct loop / of the host engine, same bytes"),
    ("instructions_qd1_host_k", "info", 0.0,
     "blocking host queue, thousands of instructions per QD1 4 KiB read (callgrind)"),
    ("instructions_qd1_host_vs_bare", "info", 0.0, "instructions of the bare host / host queue"),
    ("instructions_qd1_target_k", "info", 0.0,
     "target process, thousands of instructions per QD1 4 KiB read (callgrind)"),
    ("instructions_qd1_target_vs_bare", "info", 0.0,
     "instructions of the bare target / pynvmetcp target"),
    ("instructions_qd1_target_std_k", "info", 0.0,
     "target process on the standard event loop, thousands of instructions per QD1 read"),
]


def write_results(ratios: list[tuple[str, str]], failed: list[str]) -> None:
    """benchmarks/RESULTS.md: each goal, the ratio measured in this run, met or not. The
    profile notes under the table are kept from the previous file (they are written by hand)."""
    measured = {}
    for _, line in ratios:
        key, _, value = line[len("RATIO "):].partition("=")
        measured[key] = float(value)
    out = HERE / "RESULTS.md"
    notes = ""
    if out.exists() and "\n## Profiles and plans" in out.read_text():
        notes = out.read_text().split("\n## Profiles and plans", 1)[1]
    rows = []
    for key, op, goal, what in GOALS:
        value = measured.get(key)
        if value is None:
            verdict = "not measured"
        elif op == "info":
            verdict = "information"
        else:
            verdict = "met" if value >= goal else "NOT met"
        shown = "—" if value is None else f"{value:.3g}"
        target = "—" if op == "info" else f"≥ {goal:.3g}"
        rows.append(f"| {what} | `{key}` | {target} | {shown} | {verdict} |")
    text = ("# Benchmark results\n\nWritten by `make bench` (`python -m benchmarks`) from one run "
            f"on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; every ratio is measured "
            "side by side in that run (JSON and plots in benchmarks/results/).\n\n"
            "| goal | ratio | target | measured | verdict |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
    if failed:
        text += f"\nModules that failed in this run: {', '.join(failed)}\n"
    text += "\n## Profiles and plans" + (notes or "\n\n(none yet)\n")
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
