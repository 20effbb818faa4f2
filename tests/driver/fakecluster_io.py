"""Stand-ins for the two things the discovery service talks to, for unit tests.

* ``FakeDiscovery``: discovery endpoints (traddr, trsvcid) that are up or down, each serving a
  discovery log, and able to send the log-change AEN. It stands in for storage nodes; the real
  pynvmetcp session is tested against the pynvmetcp target separately.
* ``FakeKernelIO``: the kernel host (it cannot exist here: no nvme-tcp in this machine's
  kernel), recording which I/O controllers the service asked for and which it disconnected.
"""
from __future__ import annotations

import threading

from lightos_driver.discovery.kernel_io import Disconnected, IoTarget
from lightos_driver.discovery.session import LogEntry
from tests.polling import wait_until


def eventually(pred, timeout: float = 5.0, what: str = "condition"):
    return wait_until(pred, timeout, what, interval=0.02)


class FakeSession:
    def __init__(self, net: "FakeDiscovery", traddr: str, trsvcid: int, hostnqn: str,
                 on_change) -> None:
        self.net, self.traddr, self.trsvcid, self.hostnqn = net, traddr, trsvcid, hostnqn
        self.on_change = on_change
        self.closed = False

    def read_log(self):
        if not self.alive():
            raise ConnectionError("connection lost")
        return list(self.net.logs.get((self.traddr, self.trsvcid), self.net.log))

    def alive(self) -> bool:
        return not self.closed and (self.traddr, self.trsvcid) in self.net.up

    def close(self) -> None:
        self.closed = True


class FakeDiscovery:
    def __init__(self, endpoints: list[tuple[str, int]], log: list[LogEntry]) -> None:
        self.up = set(endpoints)
        self.log = list(log)
        self.logs: dict[tuple[str, int], list[LogEntry]] = {}
        self.sessions: list[FakeSession] = []
        self.attempts: list[tuple[str, int, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, traddr, trsvcid, hostnqn, hostid, on_change):
        with self.lock:
            self.attempts.append((traddr, trsvcid, hostnqn, hostid))
            if (traddr, trsvcid) not in self.up:
                raise ConnectionRefusedError(f"{traddr}:{trsvcid} down")
            s = FakeSession(self, traddr, trsvcid, hostnqn, on_change)
            self.sessions.append(s)
            return s

    def live_sessions(self) -> list[FakeSession]:
        return [s for s in self.sessions if s.alive()]

    def change_log(self, log: list[LogEntry]) -> None:
        """The target's log changed: AEN to every live persistent discovery controller."""
        self.log = list(log)
        for s in self.live_sessions():
            s.on_change()


class FakeKernelIO:
    def __init__(self, pairings: dict[str, str] | None = None) -> None:
        self.connected: dict[tuple, IoTarget] = {}
        self.connects: list[IoTarget] = []
        self.disconnects: list[tuple[str, str]] = []
        self.pairings = pairings or {}
        self.lock = threading.Lock()

    def ensure(self, t: IoTarget) -> str | None:
        with self.lock:
            if t.key not in self.connected:
                self.connected[t.key] = t
                self.connects.append(t)
            return f"nvme{list(self.connected).index(t.key)}"

    def disconnect_cluster(self, subsysnqn, hostnqn):
        with self.lock:
            self.disconnects.append((subsysnqn, hostnqn))
            gone = [k for k in self.connected if k[2] == subsysnqn and k[3] == hostnqn]
            for k in gone:
                del self.connected[k]
            return Disconnected([str(k) for k in gone], False)

    def hostid_for(self, hostnqn):
        return self.pairings.get(hostnqn)
