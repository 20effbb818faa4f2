"""Replays every kept crash input, and runs each atheris target briefly (make fuzz runs longer)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
CASES = sorted(p for p in (HERE / "regressions").rglob("*") if p.is_file())


def test_regression_cases():
    """Every input that ever crashed a target now passes through it cleanly."""
    assert CASES, "the regression corpus is missing"
    for case in CASES:
        TARGETS[case.parent.name](case.read_bytes())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_atheris_brief_run(name):
    """A short coverage-guided run per target; a crash fails the test and is kept on disk."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(HERE / "run_atheris.py"), name, "-runs=3000",
                           "-max_len=4096", "-seed=1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 3000 runs" in proc.stderr
