"""The service's kernel side on a fake sysfs: which controllers it connects, with which host ID,
and what it disconnects. ``pynvmetcp.kernel.connect`` is replaced by a recorder because this
machine's kernel has no nvme-tcp (the real call runs in test_lightos_vm.py)."""
from __future__ import annotations

import pytest

from fakehost import SUBSYSNQN
from lightos_driver.discovery.kernel_io import IoTarget, PynvmetcpKernelIO, choose_hostid
from pynvmetcp import kernel


class Recorder:
    def __init__(self, fail: Exception | None = None):
        self.calls = []
        self.fail = fail

    def __call__(self, traddr, trsvcid, subnqn, **kw):
        self.calls.append((traddr, trsvcid, subnqn, kw))
        if self.fail:
            raise self.fail

        class C:
            name = "nvme7"
        return C()


@pytest.fixture
def kio(fakehost, monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(kernel, "connect", rec)
    return PynvmetcpKernelIO(fakehost.paths), rec


def target(fakehost, traddr="10.0.0.1", **kw):
    return IoTarget(traddr, 4420, SUBSYSNQN, fakehost.hostnqn, **kw)


def test_connects_missing_controller_with_identity_and_loss_timeout(fakehost, kio):
    io, rec = kio
    assert io.ensure(target(fakehost, hostid="h-1", ctrl_loss_tmo=-1)) == "nvme7"
    ((traddr, port, nqn, kw),) = rec.calls
    assert (traddr, port, nqn) == ("10.0.0.1", 4420, SUBSYSNQN)
    assert kw["hostnqn"] == fakehost.hostnqn and kw["hostid"] == "h-1"
    assert kw["ctrl_loss_tmo"] == -1


def test_existing_controller_is_left_to_the_kernel(fakehost, kio):
    io, rec = kio
    fakehost.add_controller("nvme3", subsysnqn=SUBSYSNQN, traddr="10.0.0.1",
                            state="connecting")
    assert io.ensure(target(fakehost)) == "nvme3"
    assert rec.calls == []


def test_failed_connect_is_reported_not_raised(fakehost, monkeypatch):
    monkeypatch.setattr(kernel, "connect", Recorder(fail=OSError(111, "refused")))
    assert PynvmetcpKernelIO(fakehost.paths).ensure(target(fakehost)) is None


def test_hostid_paired_by_the_kernel(fakehost, kio):
    io, _ = kio
    fakehost.add_controller("nvme0", hostid="99999999-2222-4333-8444-555555555555")
    assert io.hostid_for(fakehost.hostnqn) == "99999999-2222-4333-8444-555555555555"
    assert io.hostid_for("nqn.2014-08.org.example:other") is None


def test_choose_hostid_order(fakehost):
    p = fakehost.paths
    own = fakehost.hostnqn
    assert choose_hostid(own, "entry-id", "kernel-id", p) == "kernel-id"
    assert choose_hostid(own, "entry-id", None, p) == "entry-id"
    assert choose_hostid(own, "", None, p) == "11111111-2222-4333-8444-555555555555"
    assert choose_hostid("nqn.2014-08.org.nvmexpress:uuid:abcd", "", None, p) == "abcd"
    assert choose_hostid("nqn.2014-08.org.example:other", "", None, p) == ""


def test_disconnect_cluster_deletes_only_its_controllers(fakehost, kio):
    io, _ = kio
    fakehost.add_controller("nvme0", subsysnqn=SUBSYSNQN)
    fakehost.add_controller("nvme1", subsysnqn=SUBSYSNQN, traddr="10.0.0.2")
    fakehost.add_controller("nvme2", subsysnqn="nqn.2016-01.com.example:other")
    assert io.disconnect_cluster(SUBSYSNQN, fakehost.hostnqn) == (["nvme0", "nvme1"], False)
    ctl = fakehost.paths.sys / "class/nvme"
    assert (ctl / "nvme0/delete_controller").read_text() == "1"
    assert (ctl / "nvme2/delete_controller").read_text().strip() == ""


def test_disconnect_cluster_goes_on_past_a_refused_deletion(fakehost, kio):
    """The kernel refuses (EBUSY) to delete a controller whose first connect is under way;
    here its delete_controller cannot be written at all. The other path is still deleted, and
    the caller is told something is left (to retry)."""
    io, _ = kio
    busy = fakehost.add_controller("nvme0", subsysnqn=SUBSYSNQN)
    fakehost.add_controller("nvme1", subsysnqn=SUBSYSNQN, traddr="10.0.0.2")
    (busy / "delete_controller").unlink()
    (busy / "delete_controller").mkdir()
    assert io.disconnect_cluster(SUBSYSNQN, fakehost.hostnqn) == (["nvme1"], True)
    assert (fakehost.paths.sys / "class/nvme/nvme1/delete_controller").read_text() == "1"


def test_disconnect_cluster_with_sysfs_unreadable_leaves_it_to_a_retry(fakehost, kio, tmp_path):
    io, _ = kio
    (tmp_path / "class").mkdir()
    (tmp_path / "class/nvme").write_text("")  # listing it fails (not a directory)
    io.sysfs.root = tmp_path
    assert io.disconnect_cluster(SUBSYSNQN, fakehost.hostnqn) == ([], True)
