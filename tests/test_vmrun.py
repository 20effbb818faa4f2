"""The shared boot's place in the session (tests/vmrun.py, tests/conftest.py): the modules that
need the kernel VM are ordered last, so the boot started with the session runs beside the
others; and once the session has ended, no guest starts (a boot killed then would otherwise be
retried as an emulator crash, and leave QEMU running after pytest). Runs without the VM."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def test_the_modules_needing_the_vm_are_collected_last():
    code = ("import sys, pytest\n"
            "from tests import vmrun\n"
            "pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', 'tests/driver',\n"
            "             'tests/vm', 'tests/wire'])\n"
            "print('VM', *sorted({p.module for p in vmrun.PARTS.values()}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    in_vm = {m.replace(".", "/") + ".py" for m in out[-1].split()[1:]}
    ids = [line for line in out if "::" in line]
    needs = [n for n, i in enumerate(ids) if i.split("::")[0] in in_vm]
    rest = [n for n, i in enumerate(ids) if i.split("::")[0] not in in_vm]
    assert needs and rest  # tests/driver has both kinds, tests/wire none of the VM's
    assert max(rest) < min(needs)


def test_no_guest_starts_after_the_session_ended():
    code = ("from tests import vmrun\n"
            "vmrun.kill_guests()\n"
            "try:\n"
            "    vmrun._run_bounded(['true'], 5, {})\n"
            "except RuntimeError as exc:\n"
            "    print('refused:', exc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("refused: the session has ended")
