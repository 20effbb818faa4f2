"""`pynvmetcp disconnect` and ``kernel.disconnect`` on a copy of the recorded sysfs tree (see
test_kernel_sysfs.py for what it holds). A deletion the kernel refuses is played by a
``delete_controller`` that cannot be written (a directory in its place): the write fails with
an errno, as the kernel's EBUSY for a controller whose first connect is under way does."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from pynvmetcp import kernel
from pynvmetcp.cli import disconnect as cli_disconnect
from pynvmetcp.kernel.sysfs import Sysfs, SysfsError

TREE = Path(__file__).parent / "sysfs_tree"
NQN = "nqn.2024-01.io.pynvmetcp:kernel-fallback"  # nvme0 and nvme1
CTL = "devices/virtual/nvme-fabrics/ctl"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:aed91044-64b5-43e7-9d0a-450903fa7dc6"


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "sys"
    shutil.copytree(TREE, root, symlinks=True)
    return root


def refuse(tree: Path, ctrl: str) -> None:
    attr = tree / CTL / ctrl / "delete_controller"
    attr.unlink(missing_ok=True)
    attr.mkdir()


def deleted(tree: Path, ctrl: str) -> bool:
    attr = tree / CTL / ctrl / "delete_controller"
    return attr.is_file() and attr.read_text() == "1"


def _run(*argv: str) -> int:
    ap = argparse.ArgumentParser()
    cli_disconnect.register(ap.add_subparsers())
    return cli_disconnect.run(ap.parse_args(["disconnect", *argv]))


def test_a_refused_path_does_not_keep_the_others_when_asked(tree):
    refuse(tree, "nvme0")
    told = []
    names = kernel.disconnect(subnqn=NQN, sysfs=Sysfs(tree),
                              on_refused=lambda name, exc: told.append((name, type(exc))))
    assert names == ["nvme1"] and deleted(tree, "nvme1")
    assert told == [("nvme0", SysfsError)]


def test_without_on_refused_the_first_refusal_raises(tree):
    refuse(tree, "nvme0")
    with pytest.raises(SysfsError, match="nvme0: writing delete_controller failed"):
        kernel.disconnect(subnqn=NQN, sysfs=Sysfs(tree))
    assert not deleted(tree, "nvme1")


def test_cli_disconnects_every_path_it_can_and_names_the_refused_one(tree, capsys):
    refuse(tree, "nvme0")
    assert _run("-n", NQN, "--sysfs", str(tree)) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "disconnected 1 controller(s): nvme1"
    assert err.splitlines() == [
        "pynvmetcp: not disconnected: nvme0: writing delete_controller failed: Is a directory"]


def test_cli_disconnect_by_subsystem_and_by_device(tree, capsys):
    assert _run("-n", NQN, "--sysfs", str(tree)) == 0
    assert capsys.readouterr().out.strip() == "disconnected 2 controller(s): nvme0 nvme1"
    assert _run("-d", "/dev/nvme2", "--sysfs", str(tree)) == 0
    assert deleted(tree, "nvme2") and not deleted(tree, "nvme3")
    assert _run("-n", "nqn.2024-01.io.pynvmetcp:none", "--sysfs", str(tree)) == 1
    assert "no controller matched" in capsys.readouterr().out


def test_everything_of_one_host_identity(tree):
    """``hostnqn`` alone matches every controller that host NQN connected (all four in the
    recorded tree); a criterion is still required."""
    s = Sysfs(tree)
    assert kernel.disconnect(hostnqn="nqn.2014-08.org.example:another-host", sysfs=s) == []
    assert kernel.disconnect(hostnqn=HOSTNQN, sysfs=s) == ["nvme0", "nvme1", "nvme2", "nvme3"]
    with pytest.raises(ValueError, match="give a controller"):
        kernel.disconnect(sysfs=s)
