"""The host API, written once for the blocking and the asyncio controller.

Subclasses supply two drivers: ``_run(procedure, post)`` for multi-step procedures and
``_io(command, post)`` for a single command. In the blocking host they return the value; in the
asyncio host they return an awaitable of it. So ``ctrl.identify()`` and ``await actrl.identify()``
run the same code.
"""
from __future__ import annotations

from typing import Any, Callable

from ..spec.identify import IdentifyNamespace
from . import commands as C
from . import procedures as P
from .procedures import Command


def _dw0(done) -> int:
    return done.dw0


def _data(done):
    return done.data.obj if done.data is not None else None


def _none(done) -> None:
    return None


class ControllerApi:
    """Admin commands of a connected controller."""

    cntlid: int
    io_queue_ids: list[int]
    #: The largest data transfer of one command in bytes (MDTS); 0 = no limit known.
    max_transfer: int = 0

    def _run(self, proc: P.Procedure, post: Callable | None = None) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _io(self, command: Command, post: Callable) -> Any:  # pragma: no cover
        raise NotImplementedError

    def identify(self):
        """Identify Controller (CNS 1) as a construct Container."""
        return self._run(P.identify_controller())

    def identify_namespace(self, nsid: int):
        return self._run(P.identify_namespace(nsid))

    def namespace_ids(self, nsid: int):
        """Namespace identification descriptors: {NIDT: bytes} (EUI-64, NGUID, UUID, CSI)."""
        return self._run(P.namespace_ids(nsid))

    def namespaces(self):
        """Active namespace IDs (Identify CNS 2)."""
        return self._run(P.active_namespaces())

    def get_log_page(self, lid: int, length: int, *, nsid: int = 0xFFFFFFFF, offset: int = 0,
                     lsp: int = 0, rae: bool = False):
        return self._run(P.get_log_page(lid, length, nsid=nsid, offset=offset, lsp=lsp, rae=rae))

    def discovery_log(self, *, rae: bool = False):
        """The discovery log (GENCTR checked before and after, paged).

        The last read clears RAE, which re-enables the discovery-log-change event: a
        persistent discovery controller that kept RAE set would get that event only once."""
        return self._run(P.read_discovery_log(rae=rae))

    def get_features(self, fid: int, *, nsid: int = 0, sel: int = 0, cdw11: int = 0):
        """Get Features: returns CQE DW0."""
        return self._io(Command(C.get_features(fid, nsid=nsid, sel=sel, cdw11=cdw11)), _dw0)

    def set_features(self, fid: int, cdw11: int, *, nsid: int = 0, save: bool = False):
        return self._io(Command(C.set_features(fid, cdw11, nsid=nsid, save=save)), _dw0)

    def keep_alive(self):
        return self._io(Command(C.keep_alive()), _none)

    def namespace(self, nsid: int):
        """A handle for I/O on namespace ``nsid`` (identified first, for its block size)."""
        return self._run(P.identify_namespace(nsid), lambda idns: Namespace(self, nsid, idns))


class Namespace:
    """I/O on one namespace; methods return values (blocking) or awaitables (asyncio)."""

    def __init__(self, ctrl: ControllerApi, nsid: int, idns) -> None:
        self.ctrl = ctrl
        self.nsid = nsid
        self.id = idns
        self.block_size = lba_size(idns)
        self.nblocks = idns.nsze
        self.size = self.nblocks * self.block_size
        self.max_blocks = ctrl.max_transfer // self.block_size  # 0: no limit

    def __repr__(self) -> str:
        return f"<Namespace {self.nsid}: {self.nblocks} × {self.block_size} B>"

    def _blocks(self, nbytes: int) -> int:
        if nbytes % self.block_size or not nbytes:
            raise ValueError(f"length {nbytes} is not a positive multiple of the "
                             f"{self.block_size}-byte block size")
        return nbytes // self.block_size

    def _pieces(self, slba: int, nlb: int):
        """(slba, nlb, byte offset) of each command when one transfer exceeds MDTS."""
        for done in range(0, nlb, self.max_blocks):
            yield slba + done, min(self.max_blocks, nlb - done), done * self.block_size

    def _split(self, make: Callable, slba: int, nlb: int, buf, result):
        """One transfer larger than MDTS as several commands, in order, one procedure."""
        view = memoryview(buf).cast("B")
        bs = self.block_size
        return self.ctrl._run(P.in_order(
            [make(s, n, view[off:off + n * bs]) for s, n, off in self._pieces(slba, nlb)],
            result))

    def read(self, slba: int, nlb: int):
        """Read ``nlb`` blocks at ``slba``; returns a bytearray (split by MDTS if need be)."""
        if 0 < self.max_blocks < nlb:  # larger than MDTS
            buf = bytearray(nlb * self.block_size)
            return self._split(self._read_cmd, slba, nlb, buf, buf)
        return self.ctrl._io(Command(C.read(self.nsid, slba, nlb), queue=-1,
                                     read_len=nlb * self.block_size), _data)

    def read_into(self, slba: int, buf):
        """Read into ``buf`` (its length selects the block count); nothing is copied twice.
        ``_transfer``'s work, written out: the one call whose cost is all latency at QD1."""
        view = memoryview(buf)
        nbytes = view.nbytes
        nlb = nbytes // self.block_size
        if nbytes % self.block_size or not nbytes:
            self._blocks(nbytes)  # raises
        if 0 < self.max_blocks < nlb:
            return self._split(self._read_cmd, slba, nlb, buf, None)
        return self.ctrl._io(P.read_into(self.nsid, slba, nlb, view), _none)

    def _read_cmd(self, slba: int, nlb: int, into) -> Command:
        return Command(C.read(self.nsid, slba, nlb), queue=-1, read_into=into)

    def write(self, slba: int, data, *, fua: bool = False):
        return self._transfer(lambda s, n, piece: Command(C.write(self.nsid, s, n, fua=fua),
                                                          queue=-1, write=piece), slba, data)

    def compare(self, slba: int, data):
        return self._transfer(lambda s, n, piece: Command(C.compare(self.nsid, s, n), queue=-1,
                                                          write=piece), slba, data)

    def _transfer(self, make: Callable, slba: int, buf):
        """One command for ``buf`` (``make(slba, nlb, buffer)`` builds it), or several in order
        when it is larger than MDTS."""
        nlb = self._blocks(memoryview(buf).nbytes)
        if 0 < self.max_blocks < nlb:
            return self._split(make, slba, nlb, buf, None)
        return self.ctrl._io(make(slba, nlb, buf), _none)

    def flush(self):
        return self.ctrl._io(Command(C.flush(self.nsid), queue=-1), _none)

    def write_zeroes(self, slba: int, nlb: int, *, deallocate: bool = False):
        return self.ctrl._io(Command(C.write_zeroes(self.nsid, slba, nlb, deallocate=deallocate),
                                     queue=-1), _none)

    def deallocate(self, ranges: list[tuple[int, int]]):
        """Dataset Management with the deallocate attribute over (slba, nlb) ranges."""
        sqe, data = C.dataset_management(self.nsid, ranges)
        return self.ctrl._io(Command(sqe, queue=-1, write=data), _none)


def lba_size(idns: IdentifyNamespace) -> int:
    return 1 << idns.lbaf[idns.flbas & 0xF].ds
