"""Every benchmark script runs (``--quick`` smoke size) and ends with RATIO lines; no timing is
asserted — performance is measured by ``python -m benchmarks``, not tested."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.stem.startswith("_"))
RATIO = re.compile(r"^RATIO ([A-Za-z0-9_]+)=(\S+)$")
EXPECTED = {"codec": {"codec_decode_vs_struct", "codec_encode_vs_struct",
                      "construct_compiled_vs_interpreted"},
            "digest": {"digest_vs_memcpy_4k", "digest_vs_memcpy_64k", "digest_vs_memcpy_1m"},
            "instructions": {"instructions_engine_vs_struct", "instructions_per_read_k",
                             "instructions_qd1_host_k", "instructions_qd1_host_vs_bare",
                             "instructions_qd1_target_k", "instructions_qd1_target_vs_bare",
                             "instructions_qd1_target_std_k"},
            "iops": {"qd1_latency_p50_vs_raw", "qd1_sqflow_disabled_vs_raw", "iops_qd32_per_core",
                     "asyncio_vs_blocking_qd32", "asyncio_std_vs_blocking_qd32"},
            "floor": {"qd1_floor_vs_raw", "qd1_host_vs_floor", "qd1_target_vs_floor",
                      "read128_floor_vs_raw", "read128_host_vs_floor", "read128_target_vs_floor"}}


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _ratios(stdout: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in map(RATIO.match, stdout.splitlines()) if m}


def test_the_benchmarks_are_there():
    assert {"codec", "digest"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_quick_run(name, tmp_path):
    args = ["-m", f"benchmarks.{name}", "--quick"]
    harness = "_harness" in (ROOT / "benchmarks" / f"{name}.py").read_text()
    if harness:
        args += ["--out", str(tmp_path), "--no-plot"]
    # callgrind: ~110 s alone, over 300 s beside the kernel VM's boot (tests/conftest.py); a
    # bound against a hang, not a time asserted
    proc = _run(*args, timeout=900 if name == "instructions" else 120)
    if name == "ioctl" and proc.returncode != 0 and "unavailable" in proc.stdout:
        pytest.skip(f"the cffi module is not built: {proc.stdout.strip().splitlines()[0]}")
    if name == "instructions" and proc.returncode != 0 and "unavailable" in proc.stdout:
        pytest.skip(proc.stdout.strip())  # bootstrap installs valgrind when it runs as root
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    ratios = _ratios(proc.stdout)
    assert ratios, proc.stdout
    assert EXPECTED.get(name, set()) <= ratios.keys(), proc.stdout
    assert RATIO.match(lines[-1]), "the RATIO lines come last"
    assert all(math.isfinite(v) and v > 0 for v in ratios.values()), ratios
    if harness:
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["quick"] is True and data["rounds"] >= 5
        assert data["ratios"].keys() == ratios.keys()
        for row in data["rows"]:
            assert len(row["candidate_ns"]) == len(row["baseline_ns"]) >= 5


def test_run_all_entry_point():
    proc = _run("-m", "benchmarks", "--quick", "--only", "digest")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = proc.stdout.split("=== summary", 1)[1]
    assert "RATIO digest_vs_memcpy_64k=" in summary
    bad = _run("-m", "benchmarks", "--only", "no_such_benchmark")
    assert bad.returncode != 0 and "no such benchmark" in bad.stderr


# A peer for start_peer: its first start exits as if its port had been taken (the marker file
# says it was tried), a later one listens until it is killed.
_ONCE_TAKEN = r"""
import pathlib, socket, sys, time
marker = pathlib.Path(sys.argv[2])
if not marker.exists():
    marker.write_text(sys.argv[1])
    sys.exit(1)
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
time.sleep(60)
"""


def test_a_peer_whose_port_was_taken_is_started_again_on_another(tmp_path):
    from benchmarks._peers import start_peer

    marker = tmp_path / "tried"
    port, proc = start_peer(lambda p: [sys.executable, "-c", _ONCE_TAKEN, str(p), str(marker)])
    try:
        assert marker.exists() and proc.poll() is None
        import socket
        socket.create_connection(("127.0.0.1", port), 5).close()
    finally:
        proc.kill()
        proc.wait()


def test_a_peer_that_never_listens_is_killed_and_reported(tmp_path):
    from benchmarks._peers import start_peer

    pidfile = tmp_path / "pid"
    started = []

    def command(port: int) -> list[str]:
        started.append(port)
        return [sys.executable, "-c", "import os, sys, time; "
                "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)", str(pidfile)]

    with pytest.raises(RuntimeError, match="nothing listening"):
        start_peer(command, timeout=4.0)  # ample for the pid file to be written
    assert len(started) == 1  # a peer still running is not a taken port: no second try
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(int(pidfile.read_text()), 0)
