"""The discovery-client service: the entry-file directory decides which clusters are served.

Reconcile, on start and after every change of discovery.d:

1. read every entry file; a file with a format error is rejected whole and changes nothing: its
   last good entries stay in force (also across a restart, from internal.json) until it is
   fixed or removed, so a typo in the only file of a cluster never disconnects volumes in use;
   a missing discovery.d changes nothing either;
2. group the entries per cluster (subsysnqn, hostnqn); add the endpoints learnt from referrals
   (kept in internal.json) for the clusters that still have entries;
3. start a ClusterClient for a new cluster, hand new endpoint lists to running ones;
4. for a cluster no entry file names any more: stop its discovery connection **and disconnect
   its kernel I/O controllers** — upstream leaves them (stale controllers reconnecting forever to
   a cluster nobody uses); LightOS serves every volume of a cluster through one subsystem, so
   this happens when the last volume of that cluster is detached from this host. A controller
   the kernel will not delete yet (its first connect still under way: EBUSY) is retried every
   ``reconnect_interval`` until it is gone, unless the cluster is wanted again meanwhile;
5. write internal.json (atomically) with user and referral entries.

On start the user directory is the truth for user entries (a file removed while the service was
down is honoured: the clusters internal.json says were served and no file names any more are
disconnected, unless the driver's attachment record still lists a volume of theirs — the startup
reconnect is about to restore its file); internal.json contributes the referral endpoints and the
last good entries of files rejected now. Upstream instead prefers internal.json wholesale when it
is newer than the directory.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from pynvmetcp.spec.opcodes import SubType

from ..attachments import AttachmentRecord
from ..entries import SOURCE_REFERRAL, SOURCE_USER, Entry, read_dir, read_internal, \
    with_source, write_internal
from ..paths import Paths
from .cluster import ClusterClient
from .kernel_io import KernelIO, PynvmetcpKernelIO, choose_hostid
from .metrics import Metrics, MetricsServer
from .session import SessionFactory, pynvmetcp_session_factory
from .watcher import DirWatcher

log = logging.getLogger(__name__)
Cluster = tuple[str, str]


@dataclass
class ServiceConfig:
    paths: Paths = field(default_factory=Paths)
    metrics_host: str = "::"
    metrics_port: int = 6060  # 0: any free port (tests); None: no metrics endpoint
    kato: float = 30.0
    reconnect_interval: float = 5.0
    ctrl_loss_tmo: int | None = None
    use_inotify: bool = True
    poll_interval: float = 2.0


class DiscoveryService:
    def __init__(self, config: ServiceConfig | None = None, *,
                 session_factory: SessionFactory | None = None,
                 kernel_io: KernelIO | None = None,
                 on_started: Callable[["DiscoveryService"], None] | None = None) -> None:
        self.config = config or ServiceConfig()
        self.paths = self.config.paths
        self.session_factory = session_factory or pynvmetcp_session_factory(self.config.kato)
        self.kernel_io = kernel_io or PynvmetcpKernelIO(self.paths)
        self.on_started = on_started
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None
        self.clusters: dict[Cluster, ClusterClient] = {}
        self.referrals: dict[Cluster, list[Entry]] = {}
        self.rejected: dict[str, str] = {}
        self.user_entries: list[Entry] = []
        self._last_good: dict[str, list[Entry]] = {}  # entry file name → its last good entries
        # (subsysnqn, hostnqn) whose controllers a retirement could not all delete yet → the
        # retired cluster and the retired clients (whose appliers may be inside kernel connects)
        self._leftovers: dict[tuple[str, str], tuple[Cluster, list[ClusterClient]]] = {}
        self._janitor: threading.Thread | None = None
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self.watcher = DirWatcher(self.paths.discovery_dir, lambda names: self.reconcile(),
                                  use_inotify=self.config.use_inotify,
                                  poll_interval=self.config.poll_interval)

    # ---- life ----
    def start(self) -> "DiscoveryService":
        self.paths.discovery_dir.mkdir(parents=True, exist_ok=True)
        self.paths.internal_dir.mkdir(parents=True, exist_ok=True)
        state = read_internal(self.paths.internal_json)
        served_before: set[Cluster] = set()
        if state:
            for e in state.entries:
                if e.source == SOURCE_REFERRAL:
                    self.referrals.setdefault(e.cluster, []).append(e)
                elif e.file:
                    self._last_good.setdefault(e.file, []).append(e)
                    served_before.add(e.cluster)
        if self.config.metrics_port is not None:
            self.metrics_server = MetricsServer(self.metrics, self.config.metrics_host,
                                                self.config.metrics_port)
            self.metrics_server.start()
        self.watcher.start()  # before the first read: no change can slip between the two
        self.reconcile()
        self._disconnect_dropped_while_down(served_before)
        self._janitor = threading.Thread(target=self._sweep_loop, name="dc-janitor", daemon=True)
        self._janitor.start()
        log.info("discovery-client serving %d cluster(s) from %s (watch: %s, metrics: %s)",
                 len(self.clusters), self.paths.discovery_dir, self.watcher.mode,
                 self.metrics_server.port if self.metrics_server else "off")
        if self.on_started:
            threading.Thread(target=self.on_started, args=(self,), daemon=True,
                             name="dc-on-started").start()
        return self

    def stop(self) -> None:
        """Stop serving; kernel I/O controllers stay (volumes in use must outlive a restart)."""
        self._stopped.set()
        self.watcher.stop()
        with self._lock:
            for client in self.clusters.values():
                client.stop()
            self.clusters.clear()
        if self.metrics_server:
            self.metrics_server.stop()
        if self._janitor and self._janitor is not threading.current_thread():
            self._janitor.join(timeout=5)

    def serve_forever(self) -> None:
        self._stopped.wait()

    # ---- reconcile ----
    def reconcile(self) -> None:
        with self._lock:
            if self._stopped.is_set():
                return
            if not self.paths.discovery_dir.is_dir():
                log.error("%s is missing: the %d cluster(s) served stay as they are",
                          self.paths.discovery_dir, len(self.clusters))
                return
            files, errors = read_dir(self.paths.discovery_dir)
            self.rejected = errors
            self.metrics.rejected_files.set(len(errors))
            for name in errors:
                kept = self._last_good.get(name)
                if kept:
                    files[name] = kept
                    log.warning("entry file %s rejected: its last good entries (%d) stay in "
                                "force until it is fixed or removed", name, len(kept))
            self._last_good = {name: list(entries) for name, entries in files.items()}
            user: dict[tuple, Entry] = {}
            for name, entries in files.items():
                for e in entries:
                    user.setdefault(e.key, with_source(e, SOURCE_USER, name))
            self.user_entries = list(user.values())
            wanted: dict[Cluster, list[Entry]] = {}
            for e in self.user_entries:
                wanted.setdefault(e.cluster, []).append(e)

            for cluster in [c for c in self.clusters if c not in wanted]:
                self._retire(cluster)
            for cluster in [c for c in self.referrals if c not in wanted]:
                del self.referrals[cluster]
            for cluster, entries in wanted.items():
                endpoints = entries + [r for r in self.referrals.get(cluster, [])
                                       if r.key not in {e.key for e in entries}]
                client = self.clusters.get(cluster)
                if client is None:
                    self._start_cluster(cluster, endpoints)
                else:
                    client.set_endpoints(endpoints)
            self.metrics.entries_total.set(len(self.user_entries)
                                           + sum(len(v) for v in self.referrals.values()))
            self._save_state()

    def _start_cluster(self, cluster: Cluster, endpoints: list[Entry]) -> None:
        subsysnqn, hostnqn = cluster
        entry_hostid = next((e.hostid for e in endpoints if e.hostid), "")
        hostid = choose_hostid(hostnqn, entry_hostid, self.kernel_io.hostid_for(hostnqn),
                               self.paths)
        client = ClusterClient(subsysnqn, hostnqn, hostid, endpoints,
                               session_factory=self.session_factory, kernel_io=self.kernel_io,
                               metrics=self.metrics, on_referrals=self._learnt,
                               reconnect_interval=self.config.reconnect_interval,
                               ctrl_loss_tmo=self.config.ctrl_loss_tmo)
        self.clusters[cluster] = client
        client.start()
        log.info("serving cluster %s for host %s (host ID %s) via %s", subsysnqn, hostnqn,
                 hostid or "kernel default", ", ".join(f"{e.traddr}:{e.trsvcid}"
                                                        for e in endpoints))

    def _retire(self, cluster: Cluster) -> None:
        client = self.clusters.pop(cluster)
        client.stop()
        # the cluster's subsystem, and any other subsystem its discovery log announced (and so
        # may have made us connect, even if a connect was still under way)
        announced = {k[2] for k in client.status.io_controllers} | {
            r.subnqn for r in client.status.last_log if r.subtype == SubType.NVME}
        subsystems = [cluster[0]] + sorted(announced - {cluster[0]})
        names = [n for nqn in subsystems
                 for n in self._disconnect(nqn, cluster, client)]
        self.metrics.io_controllers.labels(*cluster).set(0)
        log.info("cluster %s no longer needed by any entry file: discovery stopped, "
                 "controllers %s disconnected", cluster[0], names)

    def _disconnect_dropped_while_down(self, served_before: set[Cluster]) -> None:
        """Clusters served before the restart that no entry file names now: their files were
        removed while the service was down (the volumes were detached), so their controllers
        go — except where the attachment record still lists a volume of the cluster."""
        dropped = served_before - set(self.clusters)
        if not dropped:
            return
        try:
            volumes = AttachmentRecord(self.paths.attachments_file).load(set_aside=False)
            recorded = {v.get("connection", {}).get("subsysnqn")
                        for v in volumes["volumes"].values()}
        except (OSError, ValueError) as exc:
            log.error("attachment record unreadable (%s): keeping the controllers of %s", exc,
                      ", ".join(c[0] for c in sorted(dropped)))
            return
        for subsysnqn, hostnqn in sorted(dropped):
            if subsysnqn in recorded:
                log.warning("cluster %s has no entry file but the attachment record lists a "
                            "volume of it: keeping its controllers (the startup reconnect "
                            "restores the file)", subsysnqn)
                continue
            names = self._disconnect(subsysnqn, (subsysnqn, hostnqn), None)
            log.info("cluster %s: its entry files were removed while the service was down: "
                     "controllers %s disconnected", subsysnqn, names)

    def _disconnect(self, subsysnqn: str, owner: Cluster,
                    client: ClusterClient | None) -> list[str]:
        """Delete the subsystem's controllers for the owner cluster's host. What the kernel
        would not delete yet, and what a kernel connect still under way in the retired client
        may yet create, is left to the janitor, for as long as ``owner`` is not served again."""
        key = (subsysnqn, owner[1])
        done = self.kernel_io.disconnect_cluster(*key)
        if done.left or (client and client.applying):
            _, clients = self._leftovers.get(key, (owner, []))
            self._leftovers[key] = (owner, clients + ([client] if client else []))
        return done.deleted

    def _sweep_loop(self) -> None:
        while not self._stopped.wait(self.config.reconnect_interval):
            try:
                self._sweep()
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.exception("retrying leftover controllers failed")

    def _sweep(self) -> None:
        with self._lock:
            for key, (owner, clients) in list(self._leftovers.items()):
                applying = any(c.applying for c in clients)  # read before the deletion
                if owner in self.clusters:  # an entry file names the cluster again: keep
                    if not applying:  # (what a retired client still connects is for it too)
                        del self._leftovers[key]
                    continue
                done = self.kernel_io.disconnect_cluster(*key)
                if not applying and not done.left:
                    del self._leftovers[key]
                    log.info("subsystem %s: the controllers left by its retirement are gone "
                             "(%s)", key[0], ", ".join(done.deleted) or "they went by themselves")

    def _learnt(self, client: ClusterClient, new: list[Entry]) -> None:
        with self._lock:
            cluster = (client.subsysnqn, client.hostnqn)
            if self.clusters.get(cluster) is not client:
                return
            have = {e.key for e in self.referrals.get(cluster, [])}
            self.referrals.setdefault(cluster, []).extend(e for e in new if e.key not in have)
            self._save_state()

    def _save_state(self) -> None:
        entries = self.user_entries + [e for v in self.referrals.values() for e in v]
        try:
            write_internal(self.paths.internal_json, entries)
        except OSError as exc:
            log.error("cannot write %s: %s", self.paths.internal_json, exc)
