"""A host queue and a controller queue joined by a byte pipe, for driving the engines by hand."""
from __future__ import annotations

import pytest

from pynvmetcp.protocol import ControllerQueue, HostQueue


def wire(queue) -> bytes:
    return b"".join(bytes(b) for b in queue.data_to_send())


class Pair:
    def __init__(self, *, hdgst=False, ddgst=False, hpda=0, cpda=0, icd=4096, maxh2cdata=8192,
                 queue_size=16, sqflow_disabled=False, max_transfer=1 << 20, host_cls=HostQueue):
        self.host = host_cls(1, queue_size=queue_size, hdgst=hdgst, ddgst=ddgst, hpda=hpda,
                             icd_size=icd, sqflow_disabled=sqflow_disabled)
        self.ctrl = ControllerQueue(cpda=cpda, maxh2cdata=maxh2cdata, icd_size=icd,
                                    max_transfer=max_transfer, c2h_chunk=4096)
        self.host.initiate()
        self.ctrl_events = self.ctrl.receive(wire(self.host))
        self.host_events = self.host.receive(wire(self.ctrl))
        self.ctrl.configure(1, queue_size - 1, sqflow_disabled)

    def to_ctrl(self):
        return self.ctrl.receive(wire(self.host))

    def to_host(self):
        return self.host.receive(wire(self.ctrl))


@pytest.fixture
def pair():
    return Pair()
