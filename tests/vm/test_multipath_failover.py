"""Native multipath over two pynvmetcp target processes in the kernel VM: the optimized node is
killed during O_DIRECT writes, I/O continues on the other path with no error and no lost or
corrupted block, and the path comes back when the node returns."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import vmrun

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
GUEST = f"""
cd {ROOT}
PYTHONPATH={ROOT} {ROOT}/.venv/bin/python tests/vm/multipath_guest.py {ROOT}
"""


vmrun.part(__name__, lambda work: GUEST)


@pytest.fixture(scope="module")
def checks(vm_boot):
    found = vmrun.part_checks(vm_boot, __name__)
    return {name: recs[-1] for name, recs in found.items()}


def test_both_nodes_serve_and_the_host_connects_to_both(checks):
    assert checks["node_a"]["serving"] and checks["node_b"]["serving"], checks
    assert checks["connect_4420"]["rc"] == 0 and checks["connect_4421"]["rc"] == 0, checks


def test_two_paths_one_head(checks):
    assert checks["paths"]["ana"] == ["non-optimized", "optimized"]
    assert len(checks["paths"]["dev"]) == 1


def test_io_continues_after_the_optimized_node_dies(checks):
    k = checks["after_kill"]
    assert k["errors"] == [] and k["writes_after"] > k["writes_before"] + 300


def test_path_comes_back(checks):
    r = checks["restored"]
    assert r["path_back"] and r["errors"] == []


def test_no_lost_or_corrupted_block(checks):
    v = checks["verify"]
    assert v["bad"] == 0 and v["blocks"] > 500
