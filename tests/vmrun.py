"""Boot Debian's kernel under QEMU (virtme-ng, software emulation) and run shell scripts in it.

The guest sees this machine's root file system (read-only except ``rwdirs``), so the project's
venv works inside as it is. A boot costs ~30-50 s under emulation, so the test modules that need
the kernel do not boot it each: each registers its guest script as a ``Part``, and one boot per
test session runs every selected module's part in turn (``SharedBoot``), each in a fresh /tmp and
its own cgroup, with the kernel's NVMe state (controllers, nvmet configuration, loop devices,
mounts, the kernel log) reset between them. The guest's exit codes come back through files in the
rwdir, because vng's own exit status does not always carry them.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]

# The trees every guest Python process reads (this project, with its venv, and the Python
# installation the venv points into) are exported again as their own 9p mounts and mounted with
# the guest's page cache (cache=loose, read-only): on the root mount, uncached, each interpreter
# start re-read every module over 9p, about half of the ~20 s that importing pynvmetcp takes
# under emulation (the rest is the emulated CPU). Nothing writes to these trees while a guest runs.
CACHED = tuple(dict.fromkeys(
    str(d) for d in (ROOT, Path(sys.base_prefix)) if str(d) not in ("/", "/usr")))

PRELUDE = """
cd /
for d in {cached}; do
    tag=$(awk -v d="$d" '$2 == d && $1 ~ /^virtme[.]initmount/ {{print $1}}' /proc/mounts)
    [ -n "$tag" ] && umount "$d" && mount -t 9p -o \\
        trans=virtio,version=9p2000.L,cache=loose,msize=512000,ro "$tag" "$d"
done
cd {root}
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
    body.write_text("#!/bin/sh\n" + PRELUDE.format(venv_bin=Path(sys.executable).parent,
                                                      cached=" ".join(CACHED), root=ROOT)
                    + exports + f"( {script}\n) > {out} 2>&1\necho $? > {rc}\n")
    body.chmod(0o755)
    cmd = [_vng(), "--run", find_kernel(), "--disable-kvm", "--memory", memory,
           "--cpus", str(cpus)]
    for d in rwdirs:
        cmd += ["--rwdir", d]
    for d in CACHED:
        cmd += ["--rodir", d]
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
    with _GUESTS.lock:
        if _GUESTS.ended:
            raise RuntimeError("the session has ended: no more guests")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        _GUESTS.running.add(proc.pid)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        stderr += f"\n[the guest was killed after {timeout:g} s]"
    except BaseException:  # interrupted (^C): no emulator is left behind
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        _GUESTS.running.discard(proc.pid)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), timed_out


class _Guests:
    """The process groups of the guests running now (vng's: QEMU is in it), and whether the
    session has ended; a lock around both, so that no guest starts after ``kill_guests``
    (a boot killed in the background would otherwise be retried as a crash)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[int] = set()
        self.ended = False


_GUESTS = _Guests()


def kill_guests() -> None:
    """End every guest still running, and start none after: a session that ends (or is
    interrupted) while a boot runs in the background must not leave an emulator behind to slow
    whatever runs next."""
    with _GUESTS.lock:
        _GUESTS.ended = True
        groups = list(_GUESTS.running)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass(frozen=True)
class Part:
    """One piece of a test module's work in the shared boot: ``script(workdir)`` is sh run as
    root in the guest with ``workdir`` (writable from both sides) as its own; ``timeout`` bounds
    it there. A module may register several, told apart by ``variant``; each starts after the
    full reset, as if the guest had just booted."""

    module: str
    script: Callable[[Path], str]
    timeout: float = 600
    variant: str = ""

    @property
    def name(self) -> str:
        base = self.module.rsplit(".", 1)[-1]
        return f"{base}-{self.variant}" if self.variant else base


#: Every part registered by the test modules imported so far, by (module name, variant).
PARTS: dict[tuple[str, str], Part] = {}


def part(module: str, script: Callable[[Path], str], *, timeout: float = 600,
         variant: str = "") -> None:
    """Register a guest script of a test module (call at import, with the module's
    ``__name__``; ``variant`` names each of several)."""
    new = Part(module, script, timeout, variant)
    clash = [p.module for p in PARTS.values() if p.name == new.name and p.module != module]
    assert not clash, f"{module} and {clash[0]} would share the part directory {new.name}"
    PARTS[module, variant] = new


# Between parts: what a part leaves in the kernel goes, so that the next one starts as if the
# guest had just booted. Every command tolerates there being nothing to remove; what is still
# there afterwards is written to the part's reset.txt ("what: items" lines, empty when all went),
# for the next part's failure report (tests/vm/test_shared_boot.py checks that it all goes).
RESET = """
cd /
timeout -k 10 60 nvme disconnect-all >/dev/null 2>&1
for c in /sys/class/nvme/nvme*; do
    [ -e $c/delete_controller ] && echo 1 > $c/delete_controller
done 2>/dev/null
awk '{print $2}' /proc/mounts | grep '^/tmp/' | sort -r | while read -r m; do
    case " $KEEP " in *" $m "*) ;; *) umount -l "$m" ;; esac
done
C=/sys/kernel/config/nvmet
if [ -d $C ]; then
    rm -f $C/ports/*/subsystems/* 2>/dev/null
    for r in $C/ports/*/referrals/*; do echo 0 > $r/enable; rmdir $r; done 2>/dev/null
    for g in $C/ports/*/ana_groups/*; do [ "${g##*/}" = 1 ] || rmdir $g; done 2>/dev/null
    rmdir $C/ports/* 2>/dev/null
    for n in $C/subsystems/*/namespaces/*; do echo 0 > $n/enable; rmdir $n; done 2>/dev/null
    rm -f $C/subsystems/*/allowed_hosts/* 2>/dev/null
    rmdir $C/subsystems/* $C/hosts/* 2>/dev/null
fi
losetup -D
dmesg -C
{
    echo "controllers: $(ls /sys/class/nvme 2>/dev/null | xargs)"
    echo "ports: $(ls $C/ports 2>/dev/null | xargs)"
    echo "subsystems: $(ls $C/subsystems 2>/dev/null | xargs)"
    echo "loops: $(losetup -a | xargs)"
    echo "mounts: $(awk '{print $2}' /proc/mounts | grep '^/tmp/' \\
        | grep -vxF $(for k in $KEEP; do printf -- '-e %s ' "$k"; done) | xargs)"
} > "$1/reset.txt" 2>&1
"""

# Runs each part: a tmpfs over /tmp, with what must stay visible under /tmp bound back into it
# from /run (the parts' directory, and the project and its Python when they live under /tmp, as
# a clone made there for CI does); a cgroup whose every process is killed when the part ends;
# the part's own time limit.
RUNNER = """
W={workdir}
KEEP="{keep}"
i=0
for k in $KEEP; do i=$((i + 1)); mkdir -p /run/vmkeep/$i && mount --bind "$k" /run/vmkeep/$i; done
reset_guest() {{
{reset}
}}
run_part() {{
    d=/run/vmkeep/1/$1 cg=/sys/fs/cgroup/vmpart-$1  # (names reset_guest does not use)
    mount -t tmpfs tmpfs /tmp
    i=0
    for k in $KEEP; do i=$((i + 1)); mkdir -p "$k" && mount --bind /run/vmkeep/$i "$k"; done
    mkdir $cg
    sh -c "echo \\$\\$ > $cg/cgroup.procs; cd {root}; \\
           exec timeout -k 10 $2 sh $d/script.sh" > $d/output.txt 2>&1 < /dev/null
    echo $? > $d/rc
    echo 1 > $cg/cgroup.kill
    for i in $(seq 300); do [ -n "$(cat $cg/cgroup.procs)" ] || break; sleep 0.1; done
    rmdir $cg
    reset_guest $d
    echo "processes: $(cat $cg/cgroup.procs 2>/dev/null | xargs)" >> $d/reset.txt
    for k in $KEEP; do umount -l "$k"; done
    umount -l /tmp
}}
"""


@dataclass
class PartResult:
    rc: int
    output: str
    workdir: Path
    previous_leftovers: str  # what the reset before this part could not remove

    def leftovers(self) -> dict[str, str]:
        """What the reset after this part could not remove, by kind ('' where nothing)."""
        return _leftovers(self.workdir)


def _leftovers(workdir: Path) -> dict[str, str]:
    path = workdir / "reset.txt"
    lines = path.read_text().splitlines() if path.exists() else ["reset: did not run"]
    return dict((line.partition(":")[0], line.partition(":")[2].strip()) for line in lines)


class SharedBoot:
    """One boot running ``parts`` in order: started in the background by ``start`` (the session
    does, before its first test), or else when the first result is asked for.

    Under emulation the parts take most of the suite's time (~16 min of ~22 here, in one
    boot); waiting for them at the first test that needs one made the suite their sum with
    everything else. Booted at the start, with the tests that need it ordered last
    (tests/conftest.py), the guest works while the other tests run."""

    def __init__(self, parts: list[Part], workdir: Path) -> None:
        self.parts = parts
        self.workdir = workdir
        self._boot: subprocess.CompletedProcess | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    def start(self) -> None:
        """Boot now, in a thread, when there are parts to run and the VM is here (a test that
        needs an unavailable VM fails in ``result``, where it asks)."""
        if self._thread is None and self._boot is None and self.parts and vm_available()[0]:
            self._thread = threading.Thread(target=self._background, name="vm-boot",
                                            daemon=True)
            self._thread.start()

    def _background(self) -> None:
        try:
            self._boot = self._run()
        except BaseException as exc:  # reported to every test that asks for a result
            self._failed = exc

    def _run(self) -> subprocess.CompletedProcess:
        keep = [str(self.workdir)] + [d for d in CACHED if d.startswith("/tmp/")]
        lines = [RUNNER.format(workdir=self.workdir, keep=" ".join(keep), reset=RESET,
                               root=ROOT)]
        for p in self.parts:
            d = self.workdir / p.name
            d.mkdir(parents=True, exist_ok=True)
            (d / "script.sh").write_text(p.script(d) + "\n")
            lines.append(f"run_part {p.name} {p.timeout:g}")
        # beyond each part's own limit: the kill, the wait for its cgroup, the reset
        total = sum(p.timeout + 180 for p in self.parts) + 300
        return run_guest("\n".join(lines), rwdirs=[str(self.workdir)], timeout=total)

    def result(self, module: str, variant: str = "") -> PartResult:
        """``module``'s part (``variant`` of it) as it ended (booting first if no part has run
        yet); the VM must be available (a test needing it never skips)."""
        ok, why = vm_available()
        assert ok, f"the kernel VM is needed here and is not available: {why}"
        if self._thread is not None:
            self._thread.join()
            if self._failed is not None:
                raise RuntimeError(f"the shared boot failed: {self._failed!r}") from self._failed
        if self._boot is None:
            self._boot = self._run()
        names = [p.name for p in self.parts]
        name = PARTS[module, variant].name
        d = self.workdir / name
        rc_file, out_file = d / "rc", d / "output.txt"
        output = out_file.read_text(errors="replace") if out_file.exists() else ""
        if not rc_file.exists():
            output += f"\n[the part did not finish; the boot said:]\n{self._boot.stdout[-3000:]}"
        i = names.index(name)
        left = _leftovers(self.workdir / names[i - 1]) if i else {}
        return PartResult(int(rc_file.read_text()) if rc_file.exists() else 255, output, d,
                          "; ".join(f"{kind}: {what}" for kind, what in left.items() if what))


def part_checks(boot: SharedBoot, module: str, *, variant: str = "",
                extra: str = "") -> dict[str, list[dict]]:
    """The JSON lines ({"check": NAME, ...}, ending with {"check": "done"}) that ``module``'s
    part (``variant`` of it) printed, as NAME → records. Fails with the part's output when it
    did not get to "done"; the VM must be available (a test needing it never skips)."""
    res = boot.result(module, variant)
    found: dict[str, list[dict]] = {}
    for line in res.output.splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            found.setdefault(rec.get("check", "?"), []).append(rec)
    assert "done" in found, (f"guest part {res.workdir.name} did not finish (rc={res.rc}, "
                             f"files in {res.workdir}):\n"
                             f"{res.output[-4000:]}\n{extra}\n"
                             f"[left by the part before it: {res.previous_leftovers or 'nothing'}]")
    return found
