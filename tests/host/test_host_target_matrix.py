"""The userspace host against the userspace target over real loopback sockets: both APIs,
digests and PDU data alignment, queue depths 1..128, large transfers, many hosts at once."""
from __future__ import annotations

import asyncio
import os
import threading

import pytest

import pynvmetcp
from pynvmetcp.host import commands as C
from pynvmetcp.host.procedures import Command
from pynvmetcp.target import (ListenConfig, NamespaceConfig, SubsystemConfig, Target,
                              TargetConfig)
from tests.polling import wait_until

NQN = "nqn.2024-01.io.pynvmetcp:matrix"


@pytest.fixture(scope="module")
def target():
    cfg = TargetConfig(listen=[ListenConfig("127.0.0.1", 0)],
                       subsystems=[SubsystemConfig(NQN, namespaces=[NamespaceConfig("mem:64M")])])
    with Target.serve(cfg) as t:
        yield t


@pytest.mark.parametrize("digests", [False, True])
@pytest.mark.parametrize("hpda", [0, 3, 31])
def test_digests_and_alignment(target, digests, hpda):
    with pynvmetcp.connect("127.0.0.1", target.port, NQN, hdr_digest=digests,
                           data_digest=digests, hpda=hpda) as ctrl:
        ns = ctrl.namespace(1)
        # up to 128 KiB the writes' data goes in the capsule (the target's default in-capsule
        # size), beyond it after an R2T
        assert ctrl.io[0].engine.icd_size == 131072
        for size in (512, 4096, 20000 // 512 * 512, 131072, 262144):
            data = os.urandom(size)
            ns.write(1000, data)
            assert bytes(ns.read(1000, size // 512)) == data


@pytest.mark.parametrize("depth", [1, 8, 32, 128])
def test_blocking_pipeline_depths(target, depth):
    with pynvmetcp.connect("127.0.0.1", target.port, NQN, queue_size=129) as ctrl:
        q = ctrl.io[0]
        base = 20000 + depth * 300
        datas = [os.urandom(4096) for _ in range(depth)]
        for i, d in enumerate(datas):
            q.submit(Command(C.write(1, base + i * 8, 8), write=d))
        done = [q.wait_any() for _ in range(depth)]
        assert all(c.status == 0 for c in done) and len({c.cid for c in done}) == depth
        bufs = [bytearray(4096) for _ in range(depth)]
        for i, b in enumerate(bufs):
            q.submit(Command(C.read(1, base + i * 8, 8), read_into=b))
        for _ in range(depth):
            assert q.wait_any().status == 0
        assert [bytes(b) for b in bufs] == datas


class _CountingSocket:
    """The queue's real socket, counting the system calls that send, and the receives into
    several buffers."""

    def __init__(self, sock) -> None:
        self.sock, self.sends, self.scatters = sock, 0, 0

    def recvmsg_into(self, buffers, *args):
        self.scatters += 1
        return self.sock.recvmsg_into(buffers, *args)

    def sendmsg(self, buffers):
        self.sends += 1
        return self.sock.sendmsg(buffers)

    def sendall(self, data):
        self.sends += 1
        return self.sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_coalesced_sends(target):
    """A pipelining caller's I/O commands leave together (once half as many are held as are
    outstanding), yet a lone command leaves at once and ``flush()`` sends what is held."""
    counted = target.subsystem(NQN).namespaces[1]
    with pynvmetcp.connect("127.0.0.1", target.port, NQN, queue_size=32) as ctrl:
        q = ctrl.io[0]
        q.sock = sock = _CountingSocket(q.sock)
        bufs = [bytearray(4096) for _ in range(8)]
        before = counted.read_cmds
        q.submit(Command(C.read(1, 0, 8), read_into=bufs[0]))
        wait_until(lambda: counted.read_cmds == before + 1, 10, "the lone read at the target")
        for b in bufs[1:]:
            q.submit(Command(C.read(1, 0, 8), read_into=b))
        assert sock.sends == 4  # outstanding 1, 2, 3 and 5 sent; 6, 7, 8 held
        q.flush()
        assert sock.sends == 5
        wait_until(lambda: counted.read_cmds == before + 8, 10, "the flushed reads")
        assert all(q.wait_any().status == 0 for _ in bufs)


def test_large_reads_in_a_pipeline_end_in_the_engines_payload_buffers(target):
    """128 KiB reads 8 deep: the lane receives each payload's rest into the read's buffer, and
    the blocking queue takes the engine's ``payload_buffers`` (the rest, then staging), so a
    receive can end one payload and bring the next header; every read's data is its own."""
    datas = [os.urandom(128 << 10) for _ in range(4)]
    with pynvmetcp.connect("127.0.0.1", target.port, NQN) as ctrl:
        q = ctrl.io[0]
        for i, d in enumerate(datas):
            q.execute(Command(C.write(1, 60000 + i * 256, 256), write=d))
        q.sock = sock = _CountingSocket(q.sock)
        bufs = [bytearray(128 << 10) for _ in range(32)]
        for i, b in enumerate(bufs):
            q.submit(Command(C.read(1, 60000 + i % 4 * 256, 256), read_into=b))
            if i >= 8:
                assert q.wait_any().status == 0
        assert all(q.wait_any().status == 0 for _ in range(8))
    assert [bytes(b) for b in bufs] == datas * 8
    assert sock.scatters > 0


def test_asyncio_coalesced_sends(target):
    """The asyncio host holds commands as the blocking one does: a lone command is sent in the
    call that submits it; eight submitted in one turn of the loop leave in four sends (at 1, 2,
    3 and 5 outstanding) plus one at the end of the turn, and all complete."""
    async def run():
        async with await pynvmetcp.aconnect("127.0.0.1", target.port, NQN,
                                            queue_size=32) as ctrl:
            q = ctrl.io[0]
            sends = []
            real_send = q._sender.send
            q._sender.send = lambda buffers: (sends.append(len(buffers)), real_send(buffers))
            bufs = [bytearray(4096) for _ in range(8)]
            futures = [q.submit(Command(C.read(1, 0, 8), read_into=bufs[0]))[1]]
            assert len(sends) == 1
            futures += [q.submit(Command(C.read(1, 0, 8), read_into=b))[1] for b in bufs[1:]]
            assert len(sends) == 4
            done = await asyncio.gather(*futures)
            assert len(sends) == 5 and all(c.status == 0 for c in done)
    asyncio.run(run())


@pytest.mark.parametrize("depth", [1, 8, 32, 128])
def test_asyncio_depths(target, depth):
    async def run():
        async with await pynvmetcp.aconnect("127.0.0.1", target.port, NQN, nr_io_queues=2,
                                            queue_size=129) as ctrl:
            ns = await ctrl.namespace(1)
            base = 60000 + depth * 300
            datas = [os.urandom(4096) for _ in range(depth)]
            await asyncio.gather(*(ns.write(base + i * 8, d) for i, d in enumerate(datas)))
            back = await asyncio.gather(*(ns.read(base + i * 8, 8) for i in range(depth)))
            assert [bytes(b) for b in back] == datas
    asyncio.run(run())


def test_asyncio_more_commands_than_the_queue_holds_wait_their_turn(target):
    """queue_size 4 holds 3 commands: 60 at once all complete, never more than 3 outstanding."""
    async def run():
        async with await pynvmetcp.aconnect("127.0.0.1", target.port, NQN,
                                            queue_size=4) as ctrl:
            ns = await ctrl.namespace(1)
            q = ctrl.io[0]
            peak = 0
            real_submit = q.engine.submit

            def submit(*a, **kw):
                nonlocal peak
                cid = real_submit(*a, **kw)
                peak = max(peak, q.engine.outstanding)
                return cid
            q.engine.submit = submit
            datas = [os.urandom(512) for _ in range(60)]
            await asyncio.gather(*(ns.write(90000 + i, d) for i, d in enumerate(datas)))
            back = await asyncio.gather(*(ns.read(90000 + i, 1) for i in range(60)))
            assert [bytes(b) for b in back] == datas
            assert peak == 3
    asyncio.run(run())


@pytest.fixture
def proxied():
    """A target of its own (its queues get stalled) behind a fault proxy: the proxy."""
    from tests.reliability.proxy import FaultProxy

    cfg = TargetConfig(listen=[ListenConfig("127.0.0.1", 0)],
                       subsystems=[SubsystemConfig(NQN, namespaces=[NamespaceConfig("mem:1M")])])
    with Target.serve(cfg) as t, FaultProxy(("127.0.0.1", t.port)) as proxy:
        yield proxy


def test_asyncio_a_cancelled_waiter_gives_its_turn_away(proxied):
    """Three commands fill the queue (the target is stalled behind a proxy), two more wait; one
    of those is cancelled. Once the target answers, the other runs, and the queue still takes
    three at a time (the cancelled one kept no slot)."""
    async def run(port, proxy):
        async with await pynvmetcp.aconnect("127.0.0.1", port, NQN, queue_size=4,
                                            kato=0) as ctrl:
            ns = await ctrl.namespace(1)
            q = ctrl.io[0]
            proxy.stall()
            first = [asyncio.create_task(ns.read(i, 1)) for i in range(3)]
            waiting = [asyncio.create_task(ns.read(10 + i, 1)) for i in range(2)]
            await wait_async(lambda: q.engine.outstanding == 3 and len(q._slot_waiters) == 2)
            waiting[0].cancel()
            proxy.resume()
            await asyncio.gather(*first, waiting[1])
            assert waiting[0].cancelled()
            assert q._reserved == 0 and not q._slot_waiters
            await asyncio.gather(*(ns.read(i, 1) for i in range(9)))

    async def wait_async(pred):
        for _ in range(500):
            if pred():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("condition not reached")

    asyncio.run(run(proxied.port, proxied))


def test_asyncio_a_command_waiting_for_a_slot_times_out_too(proxied):
    """Commands that time out keep their slots until their completions come (the engine still
    expects them); a command waiting behind them fails after its own timeout, not never."""
    from pynvmetcp.errors import CommandTimeout

    async def run(port, proxy):
        async with await pynvmetcp.aconnect("127.0.0.1", port, NQN, queue_size=4, kato=0,
                                            ctrl_loss_tmo=0) as ctrl:
            await ctrl.namespace(1)
            q = ctrl.io[0]
            proxy.stall()
            lost = [asyncio.create_task(q.execute(Command(C.read(1, i, 1), read_len=512,
                                                          timeout=0.2))) for i in range(3)]
            for task in lost:
                with pytest.raises(CommandTimeout):
                    await task
            assert q.engine.outstanding == 3  # timed out, still the controller's
            with pytest.raises(CommandTimeout, match="no free slot"):
                await q.execute(Command(C.read(1, 9, 1), read_len=512, timeout=0.3))
            assert not q._reserved
            proxy.resume()

    asyncio.run(run(proxied.port, proxied))


def test_large_transfers(target):
    with pynvmetcp.connect("127.0.0.1", target.port, NQN, nr_io_queues=2,
                           hdr_digest=True, data_digest=True) as ctrl:
        ns = ctrl.namespace(1)
        mdts = 1 << (12 + ctrl.id.mdts) if ctrl.id.mdts else 1 << 20
        data = os.urandom(min(mdts, 1 << 20))
        ns.write(40000, data)
        assert bytes(ns.read(40000, len(data) // 512)) == data
        # one command beyond the maximum transfer: the target refuses it, with DNR
        with pytest.raises(pynvmetcp.NvmeStatusError) as err:
            ctrl.io[0].execute(Command(C.read(1, 0, (4 << 20) // 512), read_len=4 << 20))
        assert err.value.dnr


@pytest.mark.parametrize("api", ["blocking", "asyncio"])
def test_transfers_beyond_mdts_are_split(target, api):
    """The namespace API splits what one command may not carry (MDTS), in order."""
    data = os.urandom((3 << 20) + 4096)  # 3 MiB + 4 KiB: three full commands and a tail
    nlb = len(data) // 512

    async def run_async():
        async with await pynvmetcp.aconnect("127.0.0.1", target.port, NQN) as ctrl:
            ns = await ctrl.namespace(1)
            assert ns.max_blocks == ctrl.max_transfer // 512 == (1 << (12 + ctrl.id.mdts)) // 512
            await ns.write(100000, data)
            back = await ns.read(100000, nlb)
            into = bytearray(len(data))
            await ns.read_into(100000, into)
            await ns.compare(100000, data)
            return back, into

    if api == "asyncio":
        back, into = asyncio.run(run_async())
    else:
        with pynvmetcp.connect("127.0.0.1", target.port, NQN, nr_io_queues=2) as ctrl:
            ns = ctrl.namespace(1)
            assert 0 < ns.max_blocks < nlb
            ns.write(100000, data)
            back = ns.read(100000, nlb)
            into = bytearray(len(data))
            ns.read_into(100000, into)
            ns.compare(100000, data)
            wrong = bytearray(data)
            wrong[-1] ^= 1  # in the last piece: every piece is compared
            with pytest.raises(pynvmetcp.NvmeStatusError, match="Compare Failure"):
                ns.compare(100000, bytes(wrong))
    assert bytes(back) == data and bytes(into) == data


def test_many_hosts_at_once(target):
    errors = []

    def host(i):
        try:
            with pynvmetcp.connect("127.0.0.1", target.port, NQN, kato=2,
                                   hostnqn=f"nqn.2024-01.io.pynvmetcp:host-{i}") as ctrl:
                ns = ctrl.namespace(1)
                data = os.urandom(8192)
                for _ in range(20):
                    ns.write(80000 + i * 16, data)
                    assert bytes(ns.read(80000 + i * 16, 16)) == data
        except Exception as exc:  # collected: an assertion in a thread must fail the test
            errors.append((i, exc))

    threads = [threading.Thread(target=host, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("api", ["blocking", "asyncio"])
def test_read_into_lands_in_the_callers_buffer_and_reports_a_refusal_as_a_read(target, api):
    """``ns.read_into`` hands the queue a ReadInto (the read's values, no SQE): the data must
    land in the caller's buffer (a bytearray or a view of part of one), and a refused read must
    be reported with the Read opcode, its status and DNR, as a Command's would be."""
    data = os.urandom(8192)

    def check(ns, got, err):
        assert bytes(got[0]) == data[:4096] and bytes(got[1][4096:]) == data[4096:]
        assert (err.opcode, err.sc, err.dnr) == (0x02, 0x80, True)  # LBA Out of Range

    if api == "blocking":
        with pynvmetcp.connect("127.0.0.1", target.port, NQN) as ctrl:
            ns = ctrl.namespace(1)
            ns.write(3000, data)
            first, second = bytearray(4096), bytearray(8192)
            ns.read_into(3000, first)
            ns.read_into(3008, memoryview(second)[4096:])
            with pytest.raises(pynvmetcp.NvmeStatusError) as err:
                ns.read_into(ns.nblocks - 1, bytearray(4096))
            check(ns, (first, second), err.value)
        return

    async def run():
        async with await pynvmetcp.aconnect("127.0.0.1", target.port, NQN) as ctrl:
            ns = await ctrl.namespace(1)
            await ns.write(3000, data)
            first, second = bytearray(4096), bytearray(8192)
            await ns.read_into(3000, first)
            await ns.read_into(3008, memoryview(second)[4096:])
            with pytest.raises(pynvmetcp.NvmeStatusError) as err:
                await ns.read_into(ns.nblocks - 1, bytearray(4096))
            check(ns, (first, second), err.value)

    asyncio.run(run())


@pytest.mark.parametrize("disable_sqflow", [False, True])
def test_a_lone_blocking_read_lands_by_scatter_and_skips_the_usual_receive(target, monkeypatch,
                                                                         disable_sqflow):
    """Against the real target (C2HData then CapsuleResp, or C2HData with SUCCESS when SQ flow
    control is off) a lone ``read_into`` is completed by the scatter receive: the usual
    receive path is not entered, and the data is the data written."""
    from pynvmetcp.protocol import HostQueue
    from pynvmetcp.protocol.queue import _QueueEngine

    data = os.urandom(3 * 4096)
    with pynvmetcp.connect("127.0.0.1", target.port, NQN,
                           disable_sqflow=disable_sqflow) as ctrl:
        ns = ctrl.namespace(1)
        ns.write(5000, data)
        io, usual = ctrl.io[0].engine, []  # (the admin queue's keep-alives do not count)
        for cls in (HostQueue, _QueueEngine):
            monkeypatch.setattr(cls, "buffer_updated", lambda q, n, real=cls.buffer_updated: (
                q is io and usual.append(n)) or real(q, n))
        got = bytearray(len(data))
        for i in range(3):
            ns.read_into(5000 + i * 8, memoryview(got)[i * 4096:(i + 1) * 4096])
        assert bytes(got) == data and usual == []


def test_a_lone_read_whose_send_fails_is_reported_or_requeued(target):
    """A lone ``read_into`` hands its capsule to the socket before the engine records it: a
    send that fails must still close the queue and report the lost connection (no reconnect
    allowed), or, with reconnects allowed, requeue the read on the new association, where it
    lands."""
    import socket

    from pynvmetcp.errors import ConnectionLost

    data = os.urandom(4096)
    with pynvmetcp.connect("127.0.0.1", target.port, NQN, ctrl_loss_tmo=0) as ctrl:
        ns = ctrl.namespace(1)
        ns.write(700, data)
        q = ctrl.io[0]
        q.sock.shutdown(socket.SHUT_WR)
        with pytest.raises(ConnectionLost, match="send failed"):
            ns.read_into(700, bytearray(4096))
        assert q.closed and q.engine.outstanding == 0
    with pynvmetcp.connect("127.0.0.1", target.port, NQN, reconnect_delay=0.05,
                           ctrl_loss_tmo=10) as ctrl:
        ns = ctrl.namespace(1)
        ctrl.io[0].sock.shutdown(socket.SHUT_WR)
        got = bytearray(4096)
        ns.read_into(700, got)
        assert bytes(got) == data and ctrl.io[0].engine.outstanding == 0
