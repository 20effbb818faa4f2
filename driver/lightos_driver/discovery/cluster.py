"""One cluster as one host identity sees it: (subsysnqn, hostnqn) → one discovery connection.

A LightOS cluster serves every volume from one subsystem NQN, through every storage node, and
each node runs a discovery service on 8009. The entry files name those endpoints; this client
keeps exactly one persistent discovery connection to one of them (chosen at random, so hosts
spread over the nodes), and:

* on connect and on every discovery-log-change AEN reads the log page: NVM subsystem entries
  become kernel I/O controllers (one per storage node path), referral entries become more
  endpoints (persisted by the service in internal.json);
* when the connection dies (keep-alive failure, node down) fails over to another endpoint,
  trying each; when none answers, tries again every ``reconnect_interval`` (5 s upstream);
* every ``reconnect_interval`` re-checks that the controllers of the last log still exist in
  the kernel (one may have been deleted after ctrl_loss_tmo expired) and reconnects them.

Kernel connects run on a thread of their own, always for the latest log: a connect to a node
that accepts and then does not answer blocks for the kernel's admin timeout (a minute), and
meanwhile the discovery connection must still fail over and read new logs.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from pynvmetcp.spec.opcodes import SubType, TrType

from ..entries import SOURCE_REFERRAL, Entry
from .kernel_io import IoTarget, KernelIO
from .metrics import Metrics
from .session import DiscoverySession, LogEntry, SessionFactory

log = logging.getLogger(__name__)


@dataclass
class ClusterStatus:
    """What the service (and its tests) can observe about a cluster."""

    connected_to: tuple[str, int] | None = None
    log_reads: int = 0
    failovers: int = 0
    last_log: list[LogEntry] = field(default_factory=list)
    io_controllers: dict[tuple, str | None] = field(default_factory=dict)


class ClusterClient:
    def __init__(self, subsysnqn: str, hostnqn: str, hostid: str, endpoints: list[Entry], *,
                 session_factory: SessionFactory, kernel_io: KernelIO, metrics: Metrics,
                 on_referrals: Callable[["ClusterClient", list[Entry]], None] | None = None,
                 reconnect_interval: float = 5.0, ctrl_loss_tmo: int | None = None,
                 rng: random.Random | None = None) -> None:
        self.subsysnqn, self.hostnqn, self.hostid = subsysnqn, hostnqn, hostid
        self.session_factory = session_factory
        self.kernel_io = kernel_io
        self.metrics = metrics
        self.on_referrals = on_referrals
        self.reconnect_interval = reconnect_interval
        self.ctrl_loss_tmo = ctrl_loss_tmo
        self.rng = rng or random.Random()
        self.status = ClusterStatus()
        self._endpoints: list[Entry] = []
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._session: DiscoverySession | None = None
        self._thread: threading.Thread | None = None
        self._wanted: list[LogEntry] | None = None  # the log the kernel should reflect next
        self._apply_due = threading.Event()
        self._applier: threading.Thread | None = None
        self.set_endpoints(endpoints)

    # ---- endpoints ----
    def set_endpoints(self, endpoints: list[Entry]) -> None:
        seen: dict[tuple, Entry] = {}
        for e in endpoints:
            seen.setdefault((e.traddr, e.trsvcid), e)
        with self._lock:
            self._endpoints = list(seen.values())
        for e in self._endpoints:
            self.metrics.connections.labels("tcp", e.traddr, str(e.trsvcid), self.subsysnqn,
                                            self.hostnqn).set(1)
        if self.ctrl_loss_tmo is None:
            tmos = [e.ctrl_loss_tmo for e in endpoints if e.ctrl_loss_tmo is not None]
            if tmos:
                self.ctrl_loss_tmo = tmos[0]

    @property
    def endpoints(self) -> list[Entry]:
        with self._lock:
            return list(self._endpoints)

    # ---- life ----
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"dc-{self.subsysnqn[-12:]}")
        self._applier = threading.Thread(target=self._apply_loop, daemon=True,
                                         name=f"dc-io-{self.subsysnqn[-12:]}")
        self._thread.start()
        self._applier.start()

    def stop(self) -> None:
        """Stop discovery. The applier is not waited for: it may be inside a kernel connect
        that lasts the kernel's admin timeout; it connects nothing more once that returns,
        and ``applying`` tells when it has (the service deletes what such a connect leaves)."""
        self._stop.set()
        self._changed.set()
        self._apply_due.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)
        self._drop_session()
        for e in self.endpoints:
            self._state(e.traddr, e.trsvcid, 0)

    @property
    def applying(self) -> bool:
        """Whether the applier thread still runs (after ``stop``: a kernel connect returning)."""
        return self._applier is not None and self._applier.is_alive()

    def poke(self) -> None:
        """Read the log again soon (the AEN handler and tests call this)."""
        self._changed.set()

    # ---- the loop ----
    def _run(self) -> None:
        next_check = 0.0
        while not self._stop.is_set():
            if self._session is None and not self._connect_any():
                self._stop.wait(self.reconnect_interval)
                continue
            self._changed.wait(timeout=0.25)
            if self._stop.is_set():
                break
            session = self._session
            if session is not None and not session.alive():
                log.warning("discovery connection to %s:%s lost; failing over",
                            session.traddr, session.trsvcid)
                self.status.failovers += 1
                self._drop_session()
                continue
            if self._changed.is_set():
                self._changed.clear()
                self._read_and_apply()
            elif time.monotonic() >= next_check:
                self._request_apply(self.status.last_log)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self.reconnect_interval

    def _connect_any(self) -> bool:
        order = self.endpoints
        self.rng.shuffle(order)
        for e in order:
            if self._stop.is_set():
                return False
            try:
                session = self.session_factory(e.traddr, e.trsvcid, self.hostnqn, self.hostid,
                                               self.poke)
            except Exception as exc:  # noqa: BLE001 - any failure means "try the next one"
                log.info("discovery endpoint %s:%s of %s unavailable: %s", e.traddr, e.trsvcid,
                         self.subsysnqn, exc)
                self._state(e.traddr, e.trsvcid, 0)
                continue
            self._session = session
            self.status.connected_to = (e.traddr, e.trsvcid)
            self._state(e.traddr, e.trsvcid, 1)
            log.info("discovery connection to %s:%s for %s (host %s)", e.traddr, e.trsvcid,
                     self.subsysnqn, self.hostnqn)
            self._changed.set()
            return True
        log.warning("no discovery endpoint of %s answers; retrying in %.0fs", self.subsysnqn,
                    self.reconnect_interval)
        return False

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            self._state(session.traddr, session.trsvcid, 0)
            session.close()
        self.status.connected_to = None

    def _state(self, traddr: str, trsvcid: int, value: int) -> None:
        self.metrics.connection_state.labels("tcp", traddr, str(trsvcid),
                                             self.subsysnqn).set(value)

    def _read_and_apply(self) -> None:
        session = self._session
        if session is None:
            return
        try:
            entries = session.read_log()
        except Exception as exc:  # noqa: BLE001 - the connection is unusable: fail over
            log.warning("reading the discovery log from %s:%s failed: %s", session.traddr,
                        session.trsvcid, exc)
            self.status.failovers += 1
            self._drop_session()
            return
        self.status.log_reads += 1
        self.status.last_log = entries
        self.metrics.log_page_count.labels(self.hostnqn).inc()
        self._learn_referrals(entries)
        self._request_apply(entries)

    def _learn_referrals(self, entries: list[LogEntry]) -> None:
        known = {(e.traddr, e.trsvcid) for e in self.endpoints}
        new = [Entry(traddr=r.traddr, trsvcid=r.trsvcid, subsysnqn=self.subsysnqn,
                     hostnqn=self.hostnqn, persistent=True, source=SOURCE_REFERRAL,
                     ctrl_loss_tmo=self.ctrl_loss_tmo)
               for r in entries
               if r.subtype in (SubType.REFERRAL, SubType.CURRENT_DISCOVERY)
               and r.trtype == TrType.TCP and r.traddr and r.trsvcid
               and (r.traddr, r.trsvcid) not in known]
        if new:
            log.info("%s: learnt discovery endpoints %s from referrals", self.subsysnqn,
                     ", ".join(f"{e.traddr}:{e.trsvcid}" for e in new))
            self.set_endpoints(self.endpoints + new)
            if self.on_referrals:
                self.on_referrals(self, new)

    def _request_apply(self, entries: list[LogEntry]) -> None:
        self._wanted = entries
        self._apply_due.set()

    def _apply_loop(self) -> None:
        while not self._stop.is_set():
            self._apply_due.wait()
            self._apply_due.clear()
            entries = self._wanted
            if entries is None or self._stop.is_set():
                continue
            try:
                self._apply(entries)
            except Exception:  # noqa: BLE001 - the next log or re-check tries again
                log.exception("%s: connecting the I/O controllers failed", self.subsysnqn)

    def _apply(self, entries: list[LogEntry]) -> None:
        """Every NVM subsystem entry of the log gets a kernel I/O controller.

        A stopped client publishes nothing, at any point: the service retires a cluster by
        what the last complete pass connected, and a partial picture would leave controllers
        behind."""
        current: dict[tuple, str | None] = {}
        for r in entries:
            if self._stop.is_set():
                return
            if r.subtype != SubType.NVME or r.trtype != TrType.TCP:
                continue
            t = IoTarget(r.traddr, r.trsvcid, r.subnqn, self.hostnqn, self.hostid,
                         self.ctrl_loss_tmo)
            current[t.key] = self.kernel_io.ensure(t)
        if self._stop.is_set():
            return  # retired meanwhile: the service zeroed the metric; this would set it back
        self.status.io_controllers = current
        self.metrics.io_controllers.labels(self.subsysnqn, self.hostnqn).set(
            sum(1 for v in self.status.io_controllers.values() if v))
