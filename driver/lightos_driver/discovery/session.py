"""One persistent discovery connection, through pynvmetcp's userspace host.

Why userspace and not a kernel discovery controller: the service must see the
discovery-log-change AEN itself (the kernel only forwards it to udev as an event), must choose
which endpoint to fail over to, and must not leave kernel controllers behind when it stops.

The AEN handler runs on the controller's admin thread, so it only signals; the cluster thread
reads the log page (reading it also re-enables the event, as the spec requires).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol

from pynvmetcp.spec.opcodes import AsyncEventNotice, TrType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogEntry:
    """The parts of a discovery log page entry the service acts on."""

    subtype: int
    traddr: str
    trsvcid: int
    subnqn: str
    trtype: int = TrType.TCP
    portid: int = 0


class DiscoverySession(Protocol):
    traddr: str
    trsvcid: int

    def read_log(self) -> list[LogEntry]: ...

    def alive(self) -> bool: ...

    def close(self) -> None: ...


SessionFactory = Callable[[str, int, str, str, Callable[[], None]], DiscoverySession]


def _port(value) -> int:
    try:
        return int(str(value).strip("\0 "))
    except ValueError:
        return 0


class PynvmetcpSession:
    """A discovery controller connection with keep-alive and the log-change AEN armed."""

    def __init__(self, traddr: str, trsvcid: int, hostnqn: str, hostid: str,
                 on_change: Callable[[], None], *, kato: float = 30.0,
                 connect_timeout: float = 5.0, timeout: float = 10.0) -> None:
        import pynvmetcp
        from pynvmetcp.spec.opcodes import DISCOVERY_NQN

        self.traddr, self.trsvcid = traddr, trsvcid
        kw = {"hostnqn": hostnqn, "nr_io_queues": 0, "kato": kato, "ctrl_loss_tmo": 0,
              "connect_timeout": connect_timeout, "timeout": timeout}
        if hostid:
            kw["hostid"] = hostid
        # ctrl_loss_tmo 0: a lost connection is not retried in place; the cluster fails over
        self.ctrl = pynvmetcp.connect(traddr, trsvcid, DISCOVERY_NQN, **kw)
        self.aen = False
        try:
            self.ctrl.watch_events([AsyncEventNotice.DISCOVERY_LOG_CHANGE],
                                   lambda _: on_change())
            self.aen = True
        except Exception as exc:  # noqa: BLE001 - a target without AENs still works, polled
            log.warning("discovery controller %s:%s: no log-change events (%s); polling",
                        traddr, trsvcid, exc)

    def read_log(self) -> list[LogEntry]:
        dlog = self.ctrl.discovery_log()
        out = []
        for e in dlog.entries:
            out.append(LogEntry(subtype=int(e.subtype), traddr=str(e.traddr).strip("\0 "),
                                trsvcid=_port(e.trsvcid), subnqn=str(e.subnqn).strip("\0 "),
                                trtype=int(e.trtype), portid=int(e.portid)))
        return out

    def alive(self) -> bool:
        admin = getattr(self.ctrl, "admin", None)
        return self.ctrl.dead is None and admin is not None and not admin.closed

    def close(self) -> None:
        try:
            self.ctrl.close()
        except Exception as exc:  # noqa: BLE001
            log.debug("closing discovery session: %s", exc)


def pynvmetcp_session_factory(kato: float = 30.0) -> SessionFactory:
    def factory(traddr: str, trsvcid: int, hostnqn: str, hostid: str,
                on_change: Callable[[], None]) -> DiscoverySession:
        return PynvmetcpSession(traddr, trsvcid, hostnqn, hostid, on_change, kato=kato)
    return factory
