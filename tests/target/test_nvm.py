"""The NVM command set on memory and file namespaces, with every refusal's status and DNR."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynvmetcp.host import commands as C
from pynvmetcp.spec.opcodes import FeatureId
from pynvmetcp.target import NamespaceConfig
from tests.target.rawhost import admin, dnr, io_queue, sc, sct
from tests.target.support import NQN, make_config, running

BLOCKS = 16 << 20 >> 9


@pytest.fixture(params=["mem", "file", "file4k"])
def io(request, tmp_path):
    if request.param == "mem":
        ns = NamespaceConfig("mem:16M")
    else:
        ns = NamespaceConfig(str(tmp_path / "disk.img"), size="16M",
                             block_size=4096 if request.param == "file4k" else 512)
    with running(make_config(namespaces=[ns])) as t:
        a, cntlid = admin(t.port, NQN)
        q = io_queue(t.port, NQN, cntlid, queue_size=128)
        q.admin = a
        q.bs = ns.block_size
        q.target = t
        yield q


def test_write_read_in_capsule_and_by_r2t(io):
    small = os.urandom(8 * 512)  # in-capsule (within the target's 128 KiB)
    big = os.urandom(1 << 20)  # R2T, 1 MiB = MDTS
    io.ok(C.write(1, 0, len(small) // io.bs), write=small)
    io.ok(C.write(1, 1024, len(big) // io.bs), write=big)
    assert bytes(io.ok(C.read(1, 0, len(small) // io.bs), read_len=len(small)).data) == small
    assert bytes(io.ok(C.read(1, 1024, len(big) // io.bs), read_len=len(big)).data) == big


def test_many_outstanding_commands(io):
    blocks = [os.urandom(io.bs) for _ in range(100)]
    cids = [io.submit(C.write(1, i, 1), write=b) for i, b in enumerate(blocks)]
    assert all(io.wait(c).status == 0 for c in cids)
    cids = [io.submit(C.read(1, i, 1), read_len=io.bs) for i in range(100)]
    assert [bytes(io.wait(c).data) for c in cids] == blocks


def test_fua_write(io):
    data = os.urandom(io.bs)
    io.ok(C.write(1, 3, 1, fua=True), write=data)
    assert bytes(io.ok(C.read(1, 3, 1), read_len=io.bs).data) == data


def test_write_zeroes_and_deallocate(io):
    data = os.urandom(64 * io.bs)
    io.ok(C.write(1, 0, 64), write=data)
    io.ok(C.write_zeroes(1, 1, 10))
    io.ok(C.write_zeroes(1, 20, 2, deallocate=True))
    sqe, ranges = C.dataset_management(1, [(40, 5), (50, 0), (60, 4)])
    io.ok(sqe, write=ranges)
    back = bytes(io.ok(C.read(1, 0, 64), read_len=64 * io.bs).data)
    expect = bytearray(data)
    for slba, nlb in [(1, 10), (20, 2), (40, 5), (60, 4)]:
        expect[slba * io.bs:(slba + nlb) * io.bs] = bytes(nlb * io.bs)
    assert back == bytes(expect)


def test_dsm_without_deallocate_changes_nothing(io):
    data = os.urandom(io.bs)
    io.ok(C.write(1, 0, 1), write=data)
    sqe, ranges = C.dataset_management(1, [(0, 1)], deallocate=False)
    io.ok(sqe, write=ranges)
    assert bytes(io.ok(C.read(1, 0, 1), read_len=io.bs).data) == data


def test_compare(io):
    data = os.urandom(2 * io.bs)
    io.ok(C.write(1, 7, 2), write=data)
    io.ok(C.compare(1, 7, 2), write=data)
    c = io.cmd(C.compare(1, 7, 2), write=bytes(2 * io.bs))
    assert (sct(c), sc(c), dnr(c)) == (2, 0x85, True)


def test_flush_one_and_all(io):
    io.ok(C.write(1, 0, 1), write=bytes(io.bs))
    io.ok(C.flush(1))
    io.ok(C.flush(0xFFFFFFFF))


def test_lba_out_of_range(io):
    nblocks = (16 << 20) // io.bs
    for sqe, kw in [(C.read(1, nblocks - 1, 2), {"read_len": 2 * io.bs}),
                    (C.write(1, nblocks, 1), {"write": bytes(io.bs)}),
                    (C.write_zeroes(1, nblocks - 3, 4), {}),
                    (C.read(1, (1 << 64) - 1, 1), {"read_len": io.bs})]:
        c = io.cmd(sqe, **kw)
        assert (sct(c), sc(c), dnr(c)) == (0, 0x80, True)
    sqe, ranges = C.dataset_management(1, [(0, 1), (nblocks, 1)])
    c = io.cmd(sqe, write=ranges)
    assert (sct(c), sc(c), dnr(c)) == (0, 0x80, True)
    assert io.ok(C.read(1, nblocks - 1, 1), read_len=io.bs)


@pytest.mark.parametrize("nsid", [0, 2, 0xFFFFFFFF])
def test_invalid_namespace(io, nsid):
    c = io.cmd(C.read(nsid, 0, 1), read_len=io.bs)
    assert (sct(c), sc(c), dnr(c)) == (0, 0x0B, True)
    if nsid != 0xFFFFFFFF:
        c = io.cmd(C.flush(nsid))
        assert (sct(c), sc(c), dnr(c)) == (0, 0x0B, True)


def test_transfer_length_must_match_the_blocks(io):
    c = io.cmd(C.read(1, 0, 2), read_len=io.bs)
    assert (sct(c), sc(c), dnr(c)) == (0, 0x0F, True)
    c = io.cmd(C.write(1, 0, 1), write=bytes(2 * io.bs))
    assert (sct(c), sc(c), dnr(c)) == (0, 0x0F, True)


@pytest.mark.parametrize("opcode", [0x04, 0x0C, 0x0D, 0x19, 0x80])
def test_invalid_io_opcode(io, opcode):
    sqe = bytearray(C.flush(1))
    sqe[0] = opcode
    c = io.cmd(bytes(sqe))
    assert (sct(c), sc(c), dnr(c)) == (0, 0x01, True)


def test_transfer_over_mdts_is_refused_by_the_queue(io):
    c = io.cmd(C.read(1, 0, (2 << 20) // io.bs), read_len=2 << 20)
    assert sc(c) == 0x0F and dnr(c)


def test_write_cache_disabled_still_writes(io):
    io.admin.ok(C.set_features(FeatureId.VOLATILE_WC, 0))
    data = os.urandom(io.bs)
    io.ok(C.write(1, 9, 1), write=data)
    assert bytes(io.ok(C.read(1, 9, 1), read_len=io.bs).data) == data


def test_readonly_namespace(tmp_path):
    path = tmp_path / "ro.img"
    path.write_bytes(b"\xAB" * (1 << 20))
    with running(make_config(namespaces=[NamespaceConfig(str(path), readonly=True)])) as t:
        a, cntlid = admin(t.port, NQN)
        q = io_queue(t.port, NQN, cntlid)
        assert bytes(q.ok(C.read(1, 0, 1), read_len=512).data) == b"\xAB" * 512
        for sqe, kw in [(C.write(1, 0, 1), {"write": bytes(512)}), (C.write_zeroes(1, 0, 1), {})]:
            c = q.cmd(sqe, **kw)
            assert (sct(c), sc(c), dnr(c)) == (0, 0x20, True)
        idns = a.ok(C.identify(0, 1), read_len=4096).data
        assert idns[99] & 1  # NSATTR: write protected


def test_file_namespace_persists_to_the_file(tmp_path):
    path = tmp_path / "disk.img"
    data = os.urandom(4096)
    with running(make_config(namespaces=[NamespaceConfig(str(path), size="1M")])) as t:
        _a, cntlid = admin(t.port, NQN)
        q = io_queue(t.port, NQN, cntlid)
        q.ok(C.write(1, 8, 8), write=data)
        q.ok(C.flush(1))
    assert path.read_bytes()[4096:8192] == data
    assert path.stat().st_size == 1 << 20


def test_io_before_the_association_is_enabled_is_refused():
    with running() as t:
        a, cntlid = admin(t.port, NQN)
        q = io_queue(t.port, NQN, cntlid)
        a.ok(C.property_set(0x14, 1 | 6 << 16 | 4 << 20 | 1 << 14))  # shutdown
        c = q.cmd(C.read(1, 0, 1), read_len=512)
        assert (sct(c), sc(c)) == (0, 0x0C)


_ops = st.lists(st.tuples(st.sampled_from(["write", "zero", "read"]),
                          st.integers(0, 255), st.integers(1, 40)), min_size=1, max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops, seed=st.binary(min_size=8, max_size=8))
def test_random_io_matches_a_model(ops, seed):
    """Whatever sequence of writes and zeroings: every read returns what the model says."""
    blocks = 256
    model = bytearray(blocks * 512)
    with running(make_config(namespaces=["mem:128K"])) as t:
        _a, cntlid = admin(t.port, NQN)
        q = io_queue(t.port, NQN, cntlid)
        for i, (op, slba, nlb) in enumerate(ops):
            nlb = min(nlb, blocks - slba)
            span = slice(slba * 512, (slba + nlb) * 512)
            if op == "write":
                data = (seed + struct.pack("<I", i)) * (nlb * 512 // 12) + bytes(nlb * 512 % 12)
                q.ok(C.write(1, slba, nlb), write=data)
                model[span] = data
            elif op == "zero":
                q.ok(C.write_zeroes(1, slba, nlb))
                model[span] = bytes(nlb * 512)
            else:
                assert bytes(q.ok(C.read(1, slba, nlb), read_len=nlb * 512).data) == model[span]
        assert bytes(q.ok(C.read(1, 0, blocks), read_len=len(model)).data) == model


@pytest.fixture
def loop_device(tmp_path):
    import shutil
    import subprocess

    img = tmp_path / "blk.img"
    img.write_bytes(bytes(4 << 20))
    if not shutil.which("losetup") or os.geteuid() != 0:
        pytest.skip("needs root and losetup for a loop device")
    p = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True)
    if p.returncode:
        pytest.skip(f"no loop device here: {p.stderr.strip()}")
    dev = p.stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_block_device_namespace(loop_device):
    with running(make_config(namespaces=[NamespaceConfig(loop_device)])) as t:
        _a, cntlid = admin(t.port, NQN)
        q = io_queue(t.port, NQN, cntlid)
        assert t.subsystem(NQN).namespaces[1].size == 4 << 20
        data = os.urandom(64 << 10)
        q.ok(C.write(1, 0, 128), write=data)
        q.ok(C.write_zeroes(1, 8, 8))
        q.ok(C.flush(1))
        expect = data[:4096] + bytes(4096) + data[8192:]
        assert bytes(q.ok(C.read(1, 0, 128), read_len=len(data)).data) == expect
        with open(loop_device, "rb") as f:
            assert f.read(len(data)) == expect
