"""connect()/discover()/available() logic without a kernel: a fake /dev/nvme-fabrics.

The fake answers write(2) the way the 6.1 kernel did in the VM (an errno, or a reply to read),
and the recorded sysfs tree stands in for /sys, so the EALREADY → existing-controller path and
the errno → typed-error mapping are checked on every machine.
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from pynvmetcp import kernel
from pynvmetcp.kernel import fabrics, passthru
from pynvmetcp.kernel.sysfs import Sysfs

TREE = Path(__file__).parent / "sysfs_tree"
TEMPLATE_6_1 = (Path(__file__).parent / "nvme-fabrics-6.1.txt").read_text()
NQN = "nqn.2024-01.io.pynvmetcp:kernel-fallback"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:aed91044-64b5-43e7-9d0a-450903fa7dc6"
HOSTID = "e5cee598-33c2-45fb-a268-6e4ae7a21dfb"


class FakeFabrics:
    """Stands in for the os functions fabrics.connect uses on the device."""

    def __init__(self, path: str, answer: int | str) -> None:
        self.dev = path
        self.answer = answer
        self.written: list[str] = []

    def open(self, path, flags, *a):
        if path != self.dev:  # /dev/kmsg for the kernel log lines
            return os.open(path, flags, *a)
        return 1000

    def write(self, fd, data):
        assert fd == 1000
        self.written.append(data.decode())
        if isinstance(self.answer, int):
            raise OSError(self.answer, os.strerror(self.answer))
        return len(data)

    def read(self, fd, n):
        if fd != 1000:
            return os.read(fd, n)
        return self.answer.encode()

    def close(self, fd):
        if fd != 1000:
            os.close(fd)

    def __getattr__(self, name):
        return getattr(os, name)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    dev = tmp_path / "nvme-fabrics"
    dev.write_text(TEMPLATE_6_1)  # read_supported() reads the real file

    def make(answer):
        f = FakeFabrics(str(dev), answer)
        monkeypatch.setattr(fabrics, "os", f)
        return f
    return str(dev), make


def test_connect_writes_options_and_reads_the_instance(fake):
    dev, make = fake
    f = make("instance=5,cntlid=9\n")
    ctrl = kernel.connect("127.0.0.1", 4420, NQN, hostnqn=HOSTNQN, hostid=HOSTID,
                          nr_io_queues=2, kato=5, fabrics_dev=dev, sysfs=Sysfs(TREE))
    assert (ctrl.name, ctrl.cntlid, ctrl.already_connected) == ("nvme5", 9, False)
    assert f.written == [f"nqn={NQN},transport=tcp,traddr=127.0.0.1,trsvcid=4420,"
                         f"hostnqn={HOSTNQN},hostid={HOSTID},nr_io_queues=2,keep_alive_tmo=5"]
    assert ctrl.device == "/dev/nvme5"


def test_ealready_returns_the_existing_controller(fake):
    dev, make = fake
    make(errno.EALREADY)
    ctrl = kernel.connect("127.0.0.1", 4421, NQN, hostnqn=HOSTNQN, hostid=HOSTID,
                          fabrics_dev=dev, sysfs=Sysfs(TREE))
    assert (ctrl.name, ctrl.cntlid, ctrl.already_connected) == ("nvme1", 2, True)
    assert "already connected" in repr(ctrl)


def test_ealready_without_a_match_in_sysfs_is_an_error(fake):
    dev, make = fake
    make(errno.EALREADY)
    with pytest.raises(kernel.ConnectError) as info:
        kernel.connect("10.9.9.9", 4420, NQN, hostnqn=HOSTNQN, hostid=HOSTID,
                       fabrics_dev=dev, sysfs=Sysfs(TREE))
    assert info.value.errno == errno.EALREADY


@pytest.mark.parametrize("err, cls", [
    (errno.ECONNREFUSED, kernel.ConnectionRefused), (errno.EIO, kernel.ConnectRejected),
    (errno.EINVAL, kernel.InvalidOptions), (errno.ETIMEDOUT, kernel.ConnectTimeout),
])
def test_errno_becomes_a_typed_error(fake, err, cls):
    dev, make = fake
    make(err)
    with pytest.raises(cls) as info:
        kernel.connect("127.0.0.1", 4499, NQN, hostnqn=HOSTNQN, hostid=HOSTID,
                       fabrics_dev=dev, sysfs=Sysfs(TREE))
    assert info.value.errno == err and "127.0.0.1:4499" in str(info.value)
    assert info.value.options.startswith(f"nqn={NQN},")


def test_uuid_hostnqn_brings_its_hostid(fake):
    dev, make = fake
    f = make("instance=0,cntlid=1\n")
    kernel.connect("127.0.0.1", 4420, NQN, hostnqn=HOSTNQN, fabrics_dev=dev, sysfs=Sysfs(TREE))
    assert "hostid=aed91044-64b5-43e7-9d0a-450903fa7dc6" in f.written[0]


def test_missing_fabrics_device_says_so(tmp_path):
    missing = str(tmp_path / "nvme-fabrics")
    with pytest.raises(kernel.KernelUnavailable, match="nvme-tcp kernel module not loaded"):
        kernel.connect("127.0.0.1", 4420, NQN, fabrics_dev=missing)
    ok, why = kernel.available(missing)
    assert ok is False and "not found" in why


def test_missing_native_module_says_so(monkeypatch):
    monkeypatch.setattr(passthru, "_native", None)
    monkeypatch.setitem(sys.modules, "pynvmetcp.kernel._nvme", None)  # import → ImportError
    with pytest.raises(kernel.KernelUnavailable, match="_nvme not built"):
        passthru.native()
    with pytest.raises(kernel.KernelUnavailable, match="linux-libc-dev"):
        kernel.KernelController("nvme0").identify()


def test_available_without_passthrough_needs_only_the_fabrics_device(tmp_path, monkeypatch):
    dev = tmp_path / "nvme-fabrics"
    dev.write_text(TEMPLATE_6_1)
    monkeypatch.setattr(passthru, "_native", None)
    monkeypatch.setitem(sys.modules, "pynvmetcp.kernel._nvme", None)
    assert kernel.available(str(dev), passthrough=False)[0] is True
    ok, why = kernel.available(str(dev))
    assert ok is False and "not built" in why


def test_native_module_layout_when_built():
    try:
        mod = passthru.native()
    except kernel.KernelUnavailable:
        pytest.skip("the cffi module is not built here")
    lib = mod.lib
    assert (lib.NVME_IOCTL_ADMIN_CMD, lib.NVME_IOCTL_IO_CMD) == (0xC0484E41, 0xC0484E43)
    assert (lib.NVME_IOCTL_ADMIN64_CMD, lib.NVME_IOCTL_IO64_CMD) == (0xC0504E47, 0xC0504E48)
    assert (lib.NVME_IOCTL_ID, lib.NVME_IOCTL_RESCAN) == (0x4E40, 0x4E46)


def test_passthrough_on_a_non_nvme_fd_is_a_passthru_error():
    try:
        passthru.native()
    except kernel.KernelUnavailable:
        pytest.skip("the cffi module is not built here")
    from pynvmetcp.host import commands as C

    r, w = os.pipe()
    try:
        with pytest.raises(kernel.PassthruError) as info:
            passthru.passthru(r, C.identify(1), admin=True, read_len=4096)
        assert info.value.errno == errno.ENOTTY
    finally:
        os.close(r)
        os.close(w)
