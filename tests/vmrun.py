"""Boot Debian's kernel under QEMU (virtme-ng, software emulation) and run a shell script in it.

The guest sees this machine's root file system (read-only except ``rwdirs``), so the project's
venv works inside as it is. A boot costs ~20-50 s under emulation: boot once per test module and
run many checks per boot. The guest's exit code comes back through a file in the first rwdir,
because vng's own exit status does not always carry it.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
export PATH={venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
modprobe nvme-tcp 2>/dev/null; modprobe nvmet-tcp 2>/dev/null; modprobe loop 2>/dev/null
modprobe null_blk nr_devices=0 2>/dev/null
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
ip link set lo up
"""


#: Boots tried when QEMU itself dies before the guest script starts (an emulator crash, not a
#: test result).
BOOT_ATTEMPTS = 3


def find_kernel() -> str | None:
    """The newest /boot/vmlinuz-*-amd64 whose modules are installed."""
    for path in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        if os.path.isdir("/lib/modules/" + path.split("vmlinuz-", 1)[1]):
            return path
    return None


def _vng() -> str | None:
    here = Path(sys.executable).parent / "vng"
    return str(here) if here.exists() else shutil.which("vng")


def vm_available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root (QEMU, configfs, modules)"
    if not shutil.which("qemu-system-x86_64"):
        return False, "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
    if not find_kernel():
        return False, "no /boot/vmlinuz-* with modules (apt-get install linux-image-amd64)"
    if not _vng():
        return False, "vng missing (pip install virtme-ng)"
    return True, ""


def run_guest(script: str, *, rwdirs: list[str], timeout: float = 600, memory: str = "2G",
              cpus: int = 2, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) in a fresh guest; stdout holds the guest script's output."""
    ok, why = vm_available()
    if not ok:
        raise RuntimeError(f"kernel VM not available: {why}")
    work = Path(rwdirs[0])
    body = work / "guest-script.sh"
    out = work / "guest-output.txt"
    rc = work / "guest-rc"
    rc.unlink(missing_ok=True)
    exports = "".join(f"export {k}={v!r}\n" for k, v in (env or {}).items())
    body.write_text("#!/bin/sh\n" + PRELUDE.format(venv_bin=Path(sys.executable).parent)
                    + exports + f"( {script}\n) > {out} 2>&1\necho $? > {rc}\n")
    body.chmod(0o755)
    cmd = [_vng(), "--run", find_kernel(), "--disable-kvm", "--memory", memory,
           "--cpus", str(cpus)]
    for d in rwdirs:
        cmd += ["--rwdir", d]
    cmd += ["--exec", str(body)]
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    early_crashes = []
    for _ in range(BOOT_ATTEMPTS):
        out.unlink(missing_ok=True)
        proc, timed_out = _run_bounded(cmd, timeout, {**os.environ, "PATH": path})
        if out.exists() or proc.returncode == 0 or timed_out:
            break
        # QEMU died before the guest ran a line of the script (seen: an assertion in QEMU's
        # MSI-X emulation while the guest kernel probes its devices under TCG). Nothing of the
        # test ran, so booting again is safe; what it said is kept for the report.
        early_crashes.append((proc.stdout + proc.stderr).strip()[-1000:])
    text = out.read_text(errors="replace") if out.exists() else ""
    code = int(rc.read_text().strip()) if rc.exists() else 255
    if not rc.exists():
        text += proc.stdout + proc.stderr
        text += "".join(f"\n[boot {i + 1} crashed before the script: {c}]"
                        for i, c in enumerate(early_crashes))
    return subprocess.CompletedProcess(cmd, code, text, "")


def _run_bounded(cmd: list[str], timeout: float,
                 env: dict) -> tuple[subprocess.CompletedProcess, bool]:
    """Run vng in its own process group; past ``timeout`` the whole group goes (QEMU is vng's
    grandchild: killing vng alone would leave the emulator running, and the guest's output up
    to then is what the failure report needs)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        stderr += f"\n[the guest was killed after {timeout:g} s]"
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), timed_out


def guest_checks(script: str, workdir: str, *, timeout: float = 900,
                 extra: str = "") -> dict[str, list[dict]]:
    """Run a guest script that prints one JSON object per check ({"check": NAME, ...}) and
    ends with {"check": "done"}; returns NAME → records. Fails with the guest's output when the
    script did not get to "done"; the VM must be available (a test needing it never skips)."""
    import json

    ok, why = vm_available()
    assert ok, f"the kernel VM is needed here and is not available: {why}"
    proc = run_guest(script, rwdirs=[workdir], timeout=timeout)
    found: dict[str, list[dict]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            found.setdefault(rec.get("check", "?"), []).append(rec)
    assert "done" in found, (f"guest did not finish (rc={proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{extra}")
    return found
