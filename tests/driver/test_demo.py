"""`make demo`'s LightOS part on the userspace path, run as `make demo` runs it (a subprocess).

The kernel path of the same demo runs in the kernel VM (test_lightos_vm.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightos_driver.demo", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_userspace_flow_attach_io_extend_failover_detach():
    run = _demo("--mode", "userspace")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[1].rstrip(":") for line in lines] == [
        "fake", "volume", "attach", "I/O", "extend", "node", "detach", "LightOS"]
    assert "3 paths connected" in lines[2]
    assert "64 MiB → 128 MiB" in lines[4]
    assert "took over, new writes and the earlier 4 MiB verified" in lines[5]
    assert run.stderr == ""


def test_bad_mode_is_one_line_not_a_traceback():
    run = _demo("--mode", "floppy")
    assert run.returncode == 2 and "invalid choice" in run.stderr
    assert "Traceback" not in run.stderr
