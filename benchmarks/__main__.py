"""Run every benchmark module (``benchmarks/NAME.py``), each in its own interpreter, and repeat
their ``RATIO`` lines at the end.

    python -m benchmarks [--quick] [--only NAME[,NAME…]] [--skip NAME[,NAME…]]

Exit status 0 when every module exited 0; a module that fails is reported and the others still run.
"""
from __future__ import annotations

import argparse
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
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
