"""The discovery-client service end to end inside one process: real entry files, real inotify,
real internal.json and a real metrics HTTP endpoint; the storage nodes' discovery services and
the kernel are stood in for (fakecluster_io.py says why)."""
from __future__ import annotations

import http.client
import json
import os
import threading

import pytest

from fakecluster_io import FakeDiscovery, FakeKernelIO, eventually
from fakehost import SUBSYSNQN
from lightos_driver.discovery import DiscoveryService, ServiceConfig
from lightos_driver.discovery.session import LogEntry
from lightos_driver.entries import Entry, write_entry_file

pytest.importorskip("prometheus_client", reason="the driver extra is required")

NODES = [("10.0.0.1", 8009), ("10.0.0.2", 8009), ("10.0.0.3", 8009)]
NVM = [LogEntry(2, ip, 4420, SUBSYSNQN) for ip, _ in NODES]


def entries(host, nodes=NODES, subsysnqn=SUBSYSNQN, **kw):
    return [Entry(ip, port, subsysnqn, host.hostnqn, **kw) for ip, port in nodes]


@pytest.fixture
def svc_factory(fakehost):
    made = []

    def make(net=None, kio=None, **cfg):
        net = net or FakeDiscovery(NODES, NVM)
        kio = kio or FakeKernelIO()
        cfg.setdefault("metrics_host", "127.0.0.1")
        cfg.setdefault("metrics_port", 0)
        cfg.setdefault("reconnect_interval", 0.2)
        svc = DiscoveryService(ServiceConfig(paths=fakehost.paths, **cfg),
                               session_factory=net, kernel_io=kio)
        made.append(svc)
        return svc, net, kio

    yield make
    for s in made:
        s.stop()


def serving_vol1(fakehost, svc_factory):
    """A started service with one entry file (vol1.conf) and its three paths connected."""
    svc, net, kio = svc_factory()
    svc.start()
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf", entries(fakehost))
    eventually(lambda: len(kio.connected) == 3)
    return svc, net, kio


def metrics_text(svc, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", svc.metrics_server.port, timeout=5)
    c.request(method, "/metrics")
    r = c.getresponse()
    return r.status, r.read().decode()


def test_entry_file_brings_one_discovery_connection_and_all_paths(fakehost, svc_factory):
    svc, net, kio = svc_factory()
    svc.start()
    assert svc.watcher.mode == "inotify"
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf", entries(fakehost))
    eventually(lambda: len(kio.connected) == 3, what="3 I/O controllers")
    assert len(net.live_sessions()) == 1  # one discovery connection per cluster
    assert {t.traddr for t in kio.connected.values()} == {ip for ip, _ in NODES}
    t = next(iter(kio.connected.values()))
    assert t.hostnqn == fakehost.hostnqn
    assert t.hostid == "11111111-2222-4333-8444-555555555555"  # /etc/nvme/hostid, same host
    status, body = metrics_text(svc)
    assert status == 200
    assert 'discovery_connection_state{' in body and "discovery_entries_total 3.0" in body
    assert metrics_text(svc, "HEAD") == (200, "")


def test_log_change_event_connects_new_paths(fakehost, svc_factory):
    svc, net, kio = serving_vol1(fakehost, svc_factory)
    reads = svc.clusters[(SUBSYSNQN, fakehost.hostnqn)].status.log_reads
    net.change_log(NVM + [LogEntry(2, "10.0.0.4", 4420, SUBSYSNQN)])
    eventually(lambda: len(kio.connected) == 4, what="the path announced by the AEN")
    assert svc.clusters[(SUBSYSNQN, fakehost.hostnqn)].status.log_reads == reads + 1


def test_failover_to_another_endpoint(fakehost, svc_factory):
    svc, net, kio = svc_factory()
    svc.start()
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf", entries(fakehost))
    client = eventually(lambda: svc.clusters.get((SUBSYSNQN, fakehost.hostnqn)))
    first = eventually(lambda: client.status.connected_to)
    net.up.discard(first)  # that storage node dies
    eventually(lambda: client.status.connected_to not in (None, first), what="failover")
    assert client.status.failovers == 1
    assert len(net.live_sessions()) == 1
    net.change_log(NVM[:1])
    eventually(lambda: list(client.status.io_controllers) == [("10.0.0.1", 4420, SUBSYSNQN,
                                                               fakehost.hostnqn)])



class HangingKernelIO(FakeKernelIO):
    """The kernel's connect to 10.0.0.1 hangs (a node that accepts and never answers: the
    kernel waits out its admin timeout) until released."""

    def __init__(self) -> None:
        super().__init__()
        self.hanging, self.release = threading.Event(), threading.Event()

    def ensure(self, t):
        if t.traddr == "10.0.0.1":
            self.hanging.set()
            self.release.wait(30)
        return super().ensure(t)


def hanging_first_connect(fakehost, svc_factory, kio, net=None):
    """A started service with vol1.conf, whose first kernel connect (``kio``) now hangs."""
    svc, net, kio = svc_factory(net=net, kio=kio)
    svc.start()
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf", entries(fakehost))
    eventually(kio.hanging.is_set, what="the kernel connect that hangs")
    return svc, net, kio


def test_a_hanging_kernel_connect_does_not_hold_up_failover(fakehost, svc_factory):
    svc, net, kio = hanging_first_connect(fakehost, svc_factory, HangingKernelIO())
    client = eventually(lambda: svc.clusters.get((SUBSYSNQN, fakehost.hostnqn)))
    first = client.status.connected_to
    net.up.discard(first)  # the discovery node dies while the connect hangs
    eventually(lambda: client.status.connected_to not in (None, first),
               what="failover while a kernel connect hangs")
    assert kio.connected == {}  # still hanging: the failover did not wait for it
    kio.release.set()
    eventually(lambda: len(kio.connected) == 3, what="the paths once the connect returns")


def test_retiring_a_cluster_mid_connect_disconnects_every_announced_subsystem(fakehost,
                                                                              svc_factory):
    """The entry file goes while the first kernel connect still hangs: nothing was connected
    completely, yet every subsystem the cluster's log announced is disconnected."""
    sub2 = SUBSYSNQN + "-2"
    net = FakeDiscovery(NODES, NVM + [LogEntry(2, "10.0.0.2", 4420, sub2)])
    svc, net, kio = hanging_first_connect(fakehost, svc_factory, HangingKernelIO(), net)
    os.unlink(fakehost.paths.discovery_dir / "vol1.conf")
    eventually(lambda: (SUBSYSNQN, fakehost.hostnqn) not in svc.clusters, what="retiring")
    kio.release.set()  # the connect returns to a stopping client
    eventually(lambda: {nqn for nqn, _ in kio.disconnects} == {SUBSYSNQN, sub2},
               what="both subsystems disconnected")

class SettingUpKernelIO(HangingKernelIO):
    """As the kernel does: while its first connect hangs, the controller is already in sysfs
    (``controllers`` lists it) and refuses deletion (EBUSY) until the connect has finished."""

    def __init__(self) -> None:
        super().__init__()
        self.setting_up: set[tuple] = set()
        self.refused = 0

    def ensure(self, t):
        if t.traddr == "10.0.0.1":
            with self.lock:
                self.setting_up.add(t.key)
        try:
            return super().ensure(t)
        finally:
            with self.lock:
                self.setting_up.discard(t.key)

    def controllers(self, subsysnqn, hostnqn):
        with self.lock:
            keys = set(self.connected) | self.setting_up
        return [k for k in keys if k[2] == subsysnqn and k[3] == hostnqn]

    def disconnect_cluster(self, subsysnqn, hostnqn):
        with self.lock:
            busy = sum(1 for k in self.setting_up if k[2] == subsysnqn and k[3] == hostnqn)
            self.refused += busy
        done = super().disconnect_cluster(subsysnqn, hostnqn)
        return done._replace(left=bool(busy))


def _retired_while_a_connect_is_under_way(fakehost, svc_factory):
    """vol1.conf written, then removed while the kernel's first connect still hangs; returns
    once the retirement has had a deletion refused."""
    svc, net, kio = hanging_first_connect(fakehost, svc_factory, SettingUpKernelIO())
    os.unlink(fakehost.paths.discovery_dir / "vol1.conf")
    eventually(lambda: kio.refused, what="a deletion refused while the connect is under way")
    return svc, kio


def test_a_controller_still_being_set_up_at_retirement_is_deleted_once_it_can_be(fakehost,
                                                                                svc_factory):
    svc, kio = _retired_while_a_connect_is_under_way(fakehost, svc_factory)
    kio.release.set()  # the connect finishes: the controller exists, and may be deleted now
    eventually(lambda: not kio.controllers(SUBSYSNQN, fakehost.hostnqn),
               what="the leftover controller deleted by the retry")
    assert not svc._leftovers


def test_leftover_controllers_of_a_cluster_wanted_again_are_kept(fakehost, svc_factory):
    svc, kio = _retired_while_a_connect_is_under_way(fakehost, svc_factory)
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf", entries(fakehost))
    eventually(lambda: (SUBSYSNQN, fakehost.hostnqn) in svc.clusters, what="served again")
    kio.release.set()
    eventually(lambda: len(kio.connected) == 3, what="every path of the cluster served again")
    eventually(lambda: not svc._leftovers, what="the leftover forgotten")
    assert len(kio.connected) == 3


def test_no_endpoint_answers_then_one_comes_back(fakehost, svc_factory):
    net = FakeDiscovery(NODES, NVM)
    net.up.clear()
    svc, net, kio = svc_factory(net=net)
    svc.start()
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf", entries(fakehost))
    eventually(lambda: len(net.attempts) >= 6, what="two rounds over all endpoints")
    assert kio.connected == {}
    net.up.add(NODES[2])
    eventually(lambda: len(kio.connected) == 3, what="connect after the node returned")


def test_referrals_become_endpoints_and_are_persisted(fakehost, svc_factory):
    referral = LogEntry(1, "10.0.0.9", 8009, "nqn.2014-08.org.nvmexpress.discovery")
    net = FakeDiscovery(NODES + [("10.0.0.9", 8009)], NVM + [referral])
    svc, net, kio = svc_factory(net=net)
    svc.start()
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf", entries(fakehost, NODES[:1]))
    client = eventually(lambda: svc.clusters.get((SUBSYSNQN, fakehost.hostnqn)))
    eventually(lambda: len(client.endpoints) == 2, what="the referral endpoint")

    def persisted():
        state = json.loads(fakehost.paths.internal_json.read_text())
        return [e for e in state["entries"] if e["EntrySource"] == "referral"]

    refs = eventually(persisted, what="referral in internal.json")
    assert [(e["Traddr"], e["Trsvcid"], e["Subsysnqn"]) for e in refs] == [
        ("10.0.0.9", 8009, SUBSYSNQN)]
    net.up.discard(NODES[0])  # the only endpoint the user named goes away
    eventually(lambda: client.status.connected_to == ("10.0.0.9", 8009), what="referral used")


def test_removed_entry_files_disconnect_only_unneeded_clusters(fakehost, svc_factory):
    other = "nqn.2016-01.com.lightbitslabs:uuid:other-cluster"
    net = FakeDiscovery(NODES, NVM)
    net.logs[("10.1.0.1", 8009)] = [LogEntry(2, "10.1.0.1", 4420, other)]
    net.up.add(("10.1.0.1", 8009))
    svc, net, kio = svc_factory(net=net)
    svc.start()
    d = fakehost.paths.discovery_dir
    write_entry_file(d, "vol1.conf", entries(fakehost))
    write_entry_file(d, "vol2.conf", entries(fakehost))
    write_entry_file(d, "vol3.conf", entries(fakehost, [("10.1.0.1", 8009)], subsysnqn=other))
    eventually(lambda: len(kio.connected) == 4)
    os.unlink(d / "vol1.conf")  # vol2 still needs the cluster
    eventually(lambda: "vol1.conf" not in json.dumps(json.loads(
        fakehost.paths.internal_json.read_text())), what="state rewritten")
    assert kio.disconnects == [] and len(kio.connected) == 4
    os.unlink(d / "vol2.conf")
    eventually(lambda: kio.disconnects == [(SUBSYSNQN, fakehost.hostnqn)], what="disconnect")
    assert [k[2] for k in kio.connected] == [other]
    assert (SUBSYSNQN, fakehost.hostnqn) not in svc.clusters
    assert all(s.closed for s in net.sessions if s.traddr.startswith("10.0.0."))


def test_rejected_file_changes_nothing(fakehost, svc_factory):
    svc, net, kio = svc_factory()
    svc.start()
    (fakehost.paths.discovery_dir / "bad.conf").write_text(
        f"-t tcp -a 10.0.0.1 -s 8009 -q {fakehost.hostnqn} -n {SUBSYSNQN} --nope\n")
    eventually(lambda: "bad.conf" in svc.rejected)
    assert svc.clusters == {} and kio.connected == {}
    assert "lightos_rejected_entry_files 1.0" in metrics_text(svc)[1]


def test_temp_files_are_ignored(fakehost, svc_factory):
    svc, net, kio = svc_factory()
    svc.start()
    (fakehost.paths.discovery_dir / "tmp.dc.abc").write_text(
        "\n".join(e.line() for e in entries(fakehost)) + "\n")
    svc.reconcile()
    assert svc.clusters == {}


def test_restart_uses_referrals_only_for_clusters_still_named(fakehost, svc_factory):
    from lightos_driver.entries import write_internal
    gone = "nqn.2016-01.com.lightbitslabs:uuid:removed-while-down"
    write_internal(fakehost.paths.internal_json, [
        Entry("10.0.0.9", 8009, SUBSYSNQN, fakehost.hostnqn, source="referral"),
        Entry("10.2.0.1", 8009, gone, fakehost.hostnqn, source="user", file="old.conf")])
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf", entries(fakehost, NODES[:1]))
    svc, net, kio = svc_factory()
    svc.start()
    assert list(svc.clusters) == [(SUBSYSNQN, fakehost.hostnqn)]
    assert {(e.traddr, e.source) for e in svc.clusters[(SUBSYSNQN, fakehost.hostnqn)].endpoints
            } == {("10.0.0.1", "user"), ("10.0.0.9", "referral")}


def test_polling_watcher_when_inotify_is_off(fakehost, svc_factory):
    svc, net, kio = svc_factory(use_inotify=False, poll_interval=0.1)
    svc.start()
    assert svc.watcher.mode == "poll"
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf", entries(fakehost))
    eventually(lambda: len(kio.connected) == 3)
    os.unlink(fakehost.paths.discovery_dir / "vol1.conf")
    eventually(lambda: kio.disconnects)


def test_kernel_pairing_wins_over_entry_hostid(fakehost, svc_factory):
    kio = FakeKernelIO(pairings={fakehost.hostnqn: "99999999-2222-4333-8444-555555555555"})
    svc, net, kio = svc_factory(kio=kio)
    svc.start()
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf",
                     entries(fakehost, hostid="aaaaaaaa-2222-4333-8444-555555555555"))
    eventually(lambda: kio.connected)
    assert net.attempts[0][3] == "99999999-2222-4333-8444-555555555555"
    assert {t.hostid for t in kio.connected.values()} == {"99999999-2222-4333-8444-555555555555"}


def test_service_stop_keeps_kernel_controllers(fakehost, svc_factory):
    svc, net, kio = serving_vol1(fakehost, svc_factory)
    svc.stop()
    assert len(kio.connected) == 3 and kio.disconnects == []
    assert net.live_sessions() == []


def test_a_rejected_file_keeps_its_last_good_entries(fakehost, svc_factory):
    """A typo in the only entry file of a cluster in use must not disconnect its volumes."""
    svc, net, kio = svc_factory()
    svc.start()
    conf = fakehost.paths.discovery_dir / "vol1.conf"
    write_entry_file(fakehost.paths.discovery_dir, "vol1.conf", entries(fakehost))
    eventually(lambda: len(kio.connected) == 3)
    conf.write_text(conf.read_text() + "-t tcp -a 10.0.0.4 -s 8009 --nr-io-queues 4\n")
    eventually(lambda: "vol1.conf" in svc.rejected, what="the file rejected")
    assert kio.disconnects == [] and len(kio.connected) == 3
    assert (SUBSYSNQN, fakehost.hostnqn) in svc.clusters
    os.unlink(conf)  # removing it still detaches
    eventually(lambda: kio.disconnects == [(SUBSYSNQN, fakehost.hostnqn)], what="disconnect")


def test_a_missing_directory_changes_nothing(fakehost, svc_factory):
    svc, net, kio = serving_vol1(fakehost, svc_factory)
    d = fakehost.paths.discovery_dir
    d.rename(d.with_name("discovery.d.moved"))
    svc.reconcile()
    assert kio.disconnects == [] and (SUBSYSNQN, fakehost.hostnqn) in svc.clusters


def test_restart_keeps_a_rejected_files_entries_from_internal_state(fakehost, svc_factory):
    svc, net, kio = serving_vol1(fakehost, svc_factory)
    svc.stop()
    conf = fakehost.paths.discovery_dir / "vol1.conf"
    conf.write_text(conf.read_text() + "--bogus\n")  # broken while the service was down
    svc2, _, _ = svc_factory(net=net, kio=kio)
    svc2.start()
    assert "vol1.conf" in svc2.rejected
    assert list(svc2.clusters) == [(SUBSYSNQN, fakehost.hostnqn)] and kio.disconnects == []


def _served_then_file_removed_while_down(fakehost, svc_factory):
    svc, net, kio = serving_vol1(fakehost, svc_factory)
    svc.stop()
    os.unlink(fakehost.paths.discovery_dir / "vol1.conf")
    return net, kio


def test_files_removed_while_down_disconnect_at_start(fakehost, svc_factory):
    net, kio = _served_then_file_removed_while_down(fakehost, svc_factory)
    svc2, _, _ = svc_factory(net=net, kio=kio)
    svc2.start()
    assert kio.disconnects == [(SUBSYSNQN, fakehost.hostnqn)] and kio.connected == {}


def test_removed_while_down_but_recorded_as_attached_is_kept(fakehost, svc_factory):
    """The startup reconnect is about to restore the file: its volume's I/O must not stop."""
    from lightos_driver.attachments import AttachmentRecord
    from fakehost import VOLUME_UUID, connection_props
    net, kio = _served_then_file_removed_while_down(fakehost, svc_factory)
    AttachmentRecord(fakehost.paths.attachments_file).add(connection_props(VOLUME_UUID), "i-1")
    svc2, _, _ = svc_factory(net=net, kio=kio)
    svc2.start()
    assert kio.disconnects == [] and len(kio.connected) == 3


def test_removed_while_down_with_a_corrupt_attachment_record_is_kept(fakehost, svc_factory):
    """A record that cannot be read says nothing about what is attached: nothing is
    disconnected on its word (and it is left where it is for the connector to set aside)."""
    net, kio = _served_then_file_removed_while_down(fakehost, svc_factory)
    fakehost.paths.attachments_file.write_text("{ not json")
    svc2, _, _ = svc_factory(net=net, kio=kio)
    svc2.start()
    assert kio.disconnects == [] and len(kio.connected) == 3
    assert fakehost.paths.attachments_file.read_text() == "{ not json"


def test_metrics_port_defaults_to_6060_on_both_sides():
    from lightos_driver.connector import LightOSConnector
    assert ServiceConfig().metrics_port == 6060 == LightOSConnector().dsc_port
