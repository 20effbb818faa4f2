"""Backends and the subsystem model, without sockets."""
from __future__ import annotations

import os

import pytest

from pynvmetcp.target import FileBackend, MemoryBackend, Namespace, Subsystem, parse_size
from pynvmetcp.target.nqn import nqn_problem


@pytest.fixture(autouse=True)
def loop_kind():
    """No target runs here: once is enough (conftest's runs each test on both event loops)."""
    return None

NQN = "nqn.2024-01.io.pynvmetcp:model"


@pytest.mark.parametrize("text,value", [("4096", 4096), ("64M", 64 << 20), ("1g", 1 << 30),
                                        ("2GiB", 2 << 30), ("16K", 16 << 10), (512, 512)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "M", "1.5G", "-1", "12Q"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_memory_backend_zeroing_with_unaligned_edges():
    b = MemoryBackend(1 << 20)
    b.write(0, b"\xFF" * (1 << 20))
    b.write_zeroes(100, 3 * 4096 + 50)  # partial page, whole pages (madvise), partial page
    data = bytes(b.read(0, 1 << 20))
    assert data[:100] == b"\xFF" * 100
    assert data[100:100 + 3 * 4096 + 50] == bytes(3 * 4096 + 50)
    assert data[100 + 3 * 4096 + 50:] == b"\xFF" * (len(data) - 100 - 3 * 4096 - 50)


def test_memory_backend_read_is_a_view_and_resize_keeps_data():
    b = MemoryBackend(8192)
    b.write(0, b"abcd")
    view = b.read(0, 4)
    assert isinstance(view, memoryview) and bytes(view) == b"abcd"
    b.resize(16384)  # a view handed out earlier stays valid
    assert bytes(view) == b"abcd" and bytes(b.read(0, 4)) == b"abcd" and b.size == 16384
    b.resize(4096)
    assert b.size == 4096
    b.close()


def test_file_backend(tmp_path):
    path = tmp_path / "f.img"
    path.write_bytes(b"\x01" * 1000)
    b = FileBackend(str(path), size=8192)
    assert b.size == 8192 and not b.is_block
    assert bytes(b.read(0, 1024)) == b"\x01" * 1000 + bytes(24)
    b.write(4096, b"\x02" * 4096, fua=True)
    b.write_zeroes(4096 + 512, 1024)
    assert bytes(b.read(4096, 4096)) == b"\x02" * 512 + bytes(1024) + b"\x02" * 2560
    b.flush()
    b.resize(1 << 20)
    assert os.path.getsize(path) == 1 << 20
    b.close()


def test_file_backend_rejects_directories(tmp_path):
    with pytest.raises((ValueError, OSError)):
        FileBackend(str(tmp_path))


def test_namespace_identifiers_are_stable_and_unique():
    a, b = Subsystem(NQN), Subsystem(NQN)
    na = a.add_namespace(Namespace(MemoryBackend(4096)))
    nb = b.add_namespace(Namespace(MemoryBackend(4096)))
    assert na.nsid == nb.nsid == 1 and na.uuid == nb.uuid and na.nguid == nb.nguid
    n2 = a.add_namespace(Namespace(MemoryBackend(4096)))
    assert n2.nsid == 2 and n2.uuid != na.uuid
    with pytest.raises(ValueError, match="already used"):
        a.add_namespace(Namespace(MemoryBackend(4096)), 1)
    with pytest.raises(ValueError, match="duplicate"):
        a.add_namespace(Namespace(MemoryBackend(4096), uuid=na.uuid), 5)
    with pytest.raises(ValueError, match="out of range"):
        a.add_namespace(Namespace(MemoryBackend(4096)), 5000)


def test_namespace_geometry():
    ns = Namespace(MemoryBackend(10_000), block_size=4096)
    assert ns.nblocks == 2 and ns.size == 8192 and ns.lba_shift == 12
    with pytest.raises(ValueError):
        Namespace(MemoryBackend(4096), block_size=1000)


def test_cntlid_allocation_cycles_and_skips_live_ones():
    s = Subsystem(NQN, cntlid_min=5, cntlid_max=7)
    got = []
    for _ in range(3):
        c = s.alloc_cntlid()
        s.controllers[c] = object()
        got.append(c)
    assert got == [5, 6, 7] and s.alloc_cntlid() is None
    del s.controllers[6]
    assert s.alloc_cntlid() == 6


def test_host_list_semantics():
    any_host = Subsystem(NQN)
    assert any_host.host_allowed("nqn.2014-08.org.nvmexpress:uuid:"
                                 "00000000-0000-0000-0000-000000000001")
    listed = Subsystem(NQN, hosts=["nqn.2024-01.io.host:a"])
    assert listed.host_allowed("nqn.2024-01.io.host:a")
    assert not listed.host_allowed("nqn.2024-01.io.host:b")
    with pytest.raises(ValueError):
        Subsystem(NQN, hosts=["bad"])


@pytest.mark.parametrize("nqn,ok", [
    ("nqn.2014-08.org.nvmexpress.discovery", True),
    ("nqn.2014-08.org.nvmexpress:uuid:9e1bca8c-5f5e-4b3b-8d3e-2b6a1d0c7f11", True),
    ("nqn.2024-01.io.example:disk-1", True),
    ("nqn.2024-01.io.example", True),
    ("nqn.2024-00.io.example:x", False),
    ("nqn.24-01.io.example:x", False),
    ("iqn.2024-01.io.example:x", False),
    ("nqn.2024-01.:x", False),
    ("nqn.2024-01.io.example:x\x01", False),
    ("nqn.2024-01.io.example:" + "a" * 200, True),  # 223 bytes: the maximum
    ("nqn.2024-01.io.example:" + "a" * 201, False),
])
def test_nqn_rules(nqn, ok):
    assert (nqn_problem(nqn) is None) == ok
