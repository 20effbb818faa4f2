"""The connector against a fake host tree: os-brick's own LightOS scenarios, and the faults it has
that ours must not (atomic entry file, bounded wait, no wrong device, cleanup, detach/extend of a
missing device). The kernel's side is stood in for by the sysfs/dev files it would create."""
from __future__ import annotations

import http.server
import os
import queue
import threading

import pytest

from fakehost import NODES, SUBSYSNQN, VOLUME_UUID, connection_props
from lightos_driver import devices
from lightos_driver.connector import LightOSConnector
from lightos_driver.entries import parse_file
from lightos_driver.errors import DeviceNotFound, FlushError


class Sleeps:
    """A sleep that records and can make the device appear after N sleeps (a kernel connecting)."""

    def __init__(self, on: dict | None = None) -> None:
        self.calls: list[float] = []
        self.on = on or {}

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        action = self.on.get(len(self.calls))
        if action:
            action()


def make(fakehost, attempts=5, sleep=None, flush=None, **kw) -> LightOSConnector:
    return LightOSConnector(None, device_scan_attempts=attempts, paths=fakehost.paths,
                            sleep=sleep or Sleeps(), flush=flush or (lambda dev: None), **kw)


@pytest.fixture
def metrics_server():
    """A stand-in discovery-client metrics endpoint answering HEAD /metrics with ``status``."""
    servers = []

    def start(status: int) -> int:
        class H(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):  # noqa: N802
                self.send_response(status)
                self.end_headers()

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


# ---- connector properties ----
def test_connector_properties_with_dsc_found(fakehost, metrics_server):
    port = metrics_server(200)
    props = LightOSConnector.get_connector_properties(None, paths=fakehost.paths, dsc_port=port)
    assert props["nqn"] == fakehost.hostnqn
    assert props["found_dsc"] == "found"
    assert props["hostid"] == "11111111-2222-4333-8444-555555555555"
    assert isinstance(props["host_ips"], list)
    assert all(not ip.startswith("127.") and ip != "::1" and "%" not in ip
               for ip in props["host_ips"])


def test_dsc_not_found_when_metrics_refuse_or_nothing_listens(fakehost, metrics_server):
    port = metrics_server(404)
    assert make(fakehost, dsc_port=port).find_dsc() == ""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    assert make(fakehost, dsc_port=free).find_dsc() == ""


def test_host_nqn_created_paired_with_existing_hostid(tmp_path):
    from fakehost import FakeHost
    host = FakeHost(tmp_path / "h", hostnqn=None)
    host.paths.hostid_file.write_text("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee\n")
    props = LightOSConnector.get_connector_properties(None, paths=host.paths, dsc_port=1)
    assert props["nqn"] == "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    assert host.paths.hostnqn_file.read_text().strip() == props["nqn"]
    assert props["found_dsc"] == ""


def test_host_ips_skip_loopback_and_strip_zone():
    from lightos_driver.host import host_ips
    addrs = [("lo", "127.0.0.1"), ("lo", "::1"), ("eth0", "172.17.0.1"),
             ("eth0", "1234:5678:0:42::8a2e:370:7334"), ("eth0", "fe80::1%eth0"),
             ("eth1", "172.17.0.1")]
    assert host_ips(addrs) == ["172.17.0.1", "1234:5678:0:42::8a2e:370:7334", "fe80::1"]


# ---- connect ----
def test_connect_writes_entry_file_and_finds_device_by_link(fakehost, monkeypatch):
    dev = fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((str(src), str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr("lightos_driver.atomic.os.replace", spy)
    info = make(fakehost).connect_volume(connection_props())
    assert info == {"type": "block", "path": dev}
    conf = fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf"
    lines = conf.read_text().splitlines()
    assert lines[0].startswith("#") and lines[0].endswith(f"LightOS volume: {VOLUME_UUID}")
    assert lines[1:] == [f"-t tcp -a {ip} -s 8009 -q {fakehost.hostnqn} -n {SUBSYSNQN}"
                         for ip in NODES]
    # atomic: a tmp.dc.* file in discovery.d itself, renamed onto the final name
    (src, dst), = renames
    assert os.path.dirname(src) == str(fakehost.paths.discovery_dir)
    assert os.path.basename(src).startswith("tmp.dc.") and dst == str(conf)
    assert os.listdir(fakehost.paths.discovery_dir) == [conf.name]
    assert [e.traddr for e in parse_file(conf)] == NODES


def test_connect_finds_device_by_sysfs_without_link(fakehost):
    dev = fakehost.add_namespace("nvme2n1", VOLUME_UUID, link=False)
    assert make(fakehost).connect_volume(connection_props())["path"] == dev


def test_connect_never_returns_hidden_path_device(fakehost):
    # only the hidden path device of another head carries the UUID: not a usable device
    fakehost.add_namespace("nvme0n1", "00000000-0000-4000-8000-000000000000", link=False,
                           ctrls=(1,))
    (fakehost.paths.class_block / "nvme0c1n1" / "wwid").write_text(f"uuid.{VOLUME_UUID}\n")
    os.symlink("../../nvme0c1n1", fakehost.paths.by_id / f"nvme-uuid.{VOLUME_UUID}")
    c = make(fakehost, attempts=2)
    with pytest.raises(DeviceNotFound):
        c.connect_volume(connection_props())


def test_multipath_head_found_not_its_paths(fakehost):
    dev = fakehost.add_namespace("nvme0n1", VOLUME_UUID, link=False, ctrls=(0, 1, 2))
    assert make(fakehost).connect_volume(connection_props())["path"] == dev


def test_stale_link_is_not_trusted(fakehost):
    fakehost.add_namespace("nvme0n1", "00000000-0000-4000-8000-000000000000", link=False)
    fakehost.link(VOLUME_UUID, "nvme0n1")  # udev still points the volume at a reused name
    right = fakehost.add_namespace("nvme1n1", VOLUME_UUID, link=False)
    assert make(fakehost).connect_volume(connection_props())["path"] == right


def test_device_found_after_several_attempts(fakehost):
    sleeps = Sleeps(on={3: lambda: fakehost.add_namespace("nvme0n1", VOLUME_UUID)})
    info = make(fakehost, attempts=10, sleep=sleeps).connect_volume(connection_props())
    assert info["path"].endswith("/nvme0n1")
    assert sleeps.calls == [1.0, 2.0, 4.0]  # backoff, stopped as soon as it was there


def test_device_scan_attempts_honoured_and_failure_cleans_up(fakehost):
    sleeps = Sleeps()
    c = make(fakehost, attempts=3, sleep=sleeps)
    with pytest.raises(DeviceNotFound):
        c.connect_volume(connection_props())
    assert len(sleeps.calls) == 2  # three looks
    assert os.listdir(fakehost.paths.discovery_dir) == []  # the entry file it created is gone
    assert not fakehost.paths.attach_marker(VOLUME_UUID).exists()  # and its marker


def test_wait_is_bounded_by_timeout(fakehost):
    sleeps = Sleeps()
    c = make(fakehost, attempts=50, sleep=sleeps, device_wait_timeout=10)
    with pytest.raises(DeviceNotFound):
        c.connect_volume(connection_props())
    assert sum(sleeps.calls) <= 10


def test_failed_connect_keeps_an_entry_file_it_did_not_create(fakehost):
    c = make(fakehost, attempts=1)
    conf = fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf"
    conf.write_text(f"-t tcp -a 10.0.0.9 -s 8009 -q {fakehost.hostnqn} -n {SUBSYSNQN}\n")
    with pytest.raises(DeviceNotFound):
        c.connect_volume(connection_props())
    assert conf.exists()


OTHER_UUID = "5b3c1a52-0c1f-4e7e-9d0e-3a1f6c2b9a10"


class Parked:
    """A device wait that parks in its first sleep until the test lets it go on."""

    def __init__(self, then=None) -> None:
        self.waiting, self.go = threading.Event(), threading.Event()
        self.then = then

    def __call__(self, seconds: float) -> None:
        self.waiting.set()
        assert self.go.wait(10), "the test never released the parked wait"
        if self.then:
            self.then()
            self.then = None


def attach_in_thread(connector, props):
    out: dict = {}

    def run():
        try:
            out["info"] = connector.connect_volume(props)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc
    th = threading.Thread(target=run)
    th.start()
    return th, out


def test_a_waiting_attach_does_not_hold_up_another_volume(fakehost):
    parked = Parked()
    slow, slow_out = attach_in_thread(make(fakehost, sleep=parked), connection_props())
    try:
        assert parked.waiting.wait(5)
        fakehost.add_namespace("nvme1n1", OTHER_UUID, nsid=2)
        fast, fast_out = attach_in_thread(make(fakehost), connection_props(OTHER_UUID))
        fast.join(5)
        assert not fast.is_alive(), "the other volume's attach waited for the slow one"
        assert fast_out["info"]["path"].endswith("/nvme1n1")
    finally:
        fakehost.add_namespace("nvme0n1", VOLUME_UUID)
        parked.go.set()
        slow.join(10)
    assert slow_out["info"]["path"].endswith("/nvme0n1")


def first_of_two_attaches_fails(fakehost):
    """Two attaches of one volume (multiattach): the first creates the entry file, the second
    waits on it, the first gives up (its last look finds nothing). Returns the entry file and
    the second attach (its thread, its result, and its parked wait, to be released)."""
    conf = fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf"
    first_parked, second_parked = Parked(), Parked()
    first, first_out = attach_in_thread(make(fakehost, attempts=2, sleep=first_parked),
                                        connection_props())
    assert first_parked.waiting.wait(5)
    second, second_out = attach_in_thread(make(fakehost, attempts=2, sleep=second_parked),
                                          connection_props())
    assert second_parked.waiting.wait(5)
    first_parked.go.set()
    first.join(10)
    assert isinstance(first_out["error"], DeviceNotFound)
    assert conf.exists()  # the second attach still waits on it
    return conf, second, second_out, second_parked


def device_appears_for(fakehost, second, second_out, parked) -> str:
    """Let the parked second attach go on and find the device; the path it returns."""
    parked.then = lambda: fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    parked.go.set()
    second.join(10)
    return second_out["info"]["path"]


def test_failed_attach_keeps_the_entry_file_another_attach_still_waits_on(fakehost):
    """Two attaches of one volume (multiattach): the first creates the entry file and gives up;
    the second, still waiting, must find the file in place."""
    conf, *second = first_of_two_attaches_fails(fakehost)
    assert device_appears_for(fakehost, *second).endswith("/nvme0n1")
    assert conf.exists()
    assert not fakehost.paths.attach_marker(VOLUME_UUID).exists()  # nobody waits any more


def test_when_every_attach_of_a_volume_fails_the_entry_file_goes(fakehost):
    """The first attach created the entry file and gave up while a second waited on it; the
    removal passed to the second, which fails too and removes it."""
    conf, second, second_out, second_parked = first_of_two_attaches_fails(fakehost)
    second_parked.go.set()
    second.join(10)
    assert isinstance(second_out["error"], DeviceNotFound)
    assert not conf.exists()
    assert not fakehost.paths.attach_marker(VOLUME_UUID).exists()


def test_without_a_marker_file_attaches_of_this_process_still_see_each_other(fakehost):
    """The state dir cannot take the marker (here ``attaching`` is a file): the attaches of
    this process are counted in memory, so a failing one still keeps the file the other
    waits on."""
    fakehost.paths.state_dir.mkdir(parents=True, exist_ok=True)
    (fakehost.paths.state_dir / "attaching").write_text("not a directory")
    conf, *second = first_of_two_attaches_fails(fakehost)
    assert device_appears_for(fakehost, *second).endswith("/nvme0n1") and conf.exists()


def test_a_hand_over_settled_by_another_process_is_not_taken_again(fakehost):
    """This process's attach gives up while one in another process (its shared flock, here
    taken on a separate open file) still waits: the removal duty is handed over. That other
    attach settles last and the hand-over is done. A later attach here that did not create the
    entry file must not find the old hand-over and remove the file."""
    import fcntl

    from lightos_driver.locking import AttachMarker

    path = fakehost.paths.attach_marker(VOLUME_UUID)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = AttachMarker(path).hold()
    other = os.open(path, os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_SH)  # the other process's waiting attach
    first.release()
    assert first.settle(created=True, found=False) is False  # handed over, not removed here
    assert path.read_bytes() == b"1"
    os.close(other)  # the other process's attach settles last: it removes the file itself
    path.unlink()
    later = AttachMarker(path).hold()
    later.release()
    assert later.settle(created=False, found=False) is False


def test_connect_twice_does_not_rewrite(fakehost):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    c = make(fakehost)
    c.connect_volume(connection_props())
    conf = fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf"
    ino = conf.stat().st_ino
    assert c.connect_volume(connection_props())["path"].endswith("nvme0n1")
    assert conf.stat().st_ino == ino


def test_connect_rewrites_an_outdated_entry_file(fakehost):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    conf = fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf"
    conf.write_text(f"-t tcp -a 10.0.0.9 -s 8009 -q {fakehost.hostnqn} -n {SUBSYSNQN}\n")
    make(fakehost).connect_volume(connection_props())
    assert [e.traddr for e in parse_file(conf)] == NODES


@pytest.mark.parametrize("bad", ["../../etc/passwd", "tmp/x", "", ".hidden"])
def test_path_like_volume_ids_refused(fakehost, bad):
    with pytest.raises(ValueError):
        make(fakehost).connect_volume(connection_props(uuid=bad))
    assert os.listdir(fakehost.paths.discovery_dir) == []


def test_message_queue_bookkeeping(fakehost):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    q: queue.Queue = queue.Queue()
    c = make(fakehost, message_queue=q)
    c.connect_volume(connection_props())
    c.disconnect_volume(connection_props(), None)
    assert [op for op, _ in (q.get(), q.get())] == ["add", "delete"]


# ---- disconnect ----
def test_disconnect_flushes_and_removes_entry_file(fakehost):
    dev = fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    flushed = []
    c = make(fakehost, flush=flushed.append)
    c.connect_volume(connection_props())
    c.disconnect_volume(connection_props(), {"type": "block", "path": dev})
    assert flushed == [dev]
    assert os.listdir(fakehost.paths.discovery_dir) == []


def test_disconnect_of_a_gone_device_does_not_wait(fakehost):
    sleeps = Sleeps()
    c = make(fakehost, sleep=sleeps, flush=lambda d: pytest.fail("nothing to flush"))
    (fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf").write_text("# x\n")
    c.disconnect_volume(connection_props(), None)
    assert sleeps.calls == []
    assert os.listdir(fakehost.paths.discovery_dir) == []


def test_disconnect_without_anything_is_fine(fakehost):
    make(fakehost).disconnect_volume(connection_props(), None)


def _failing_flush(dev):
    raise FlushError(f"flushing {dev} failed: Input/output error")


def test_disconnect_flush_failure_stops_detach(fakehost):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    c = make(fakehost, flush=_failing_flush)
    c.connect_volume(connection_props())
    with pytest.raises(FlushError):
        c.disconnect_volume(connection_props(), None)
    assert os.listdir(fakehost.paths.discovery_dir) == [f"{VOLUME_UUID}.conf"]


def test_disconnect_flush_failure_with_force_detaches_and_reports(fakehost):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    c = make(fakehost, flush=_failing_flush)
    c.connect_volume(connection_props())
    with pytest.raises(FlushError):
        c.disconnect_volume(connection_props(), None, force=True)
    assert os.listdir(fakehost.paths.discovery_dir) == []


def test_disconnect_ignore_errors(fakehost):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    c = make(fakehost, flush=_failing_flush)
    c.connect_volume(connection_props())
    c.disconnect_volume(connection_props(), None, force=True, ignore_errors=True)
    assert os.listdir(fakehost.paths.discovery_dir) == []


def test_disconnect_entry_file_delete_failure(fakehost, monkeypatch):
    c = make(fakehost)
    (fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf").write_text("# x\n")

    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pathlib.Path.unlink", refuse)
    from lightos_driver.errors import EntryFileError
    with pytest.raises(EntryFileError):
        c.disconnect_volume(connection_props(), None)


# ---- extend ----
def test_extend_returns_size_in_bytes(fakehost):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID, size_bytes=1 << 30)
    c = make(fakehost)
    assert c.extend_volume({"uuid": VOLUME_UUID}) == 2097152 * 512
    fakehost.resize("nvme0n1", 2 << 30)
    assert c.extend_volume({"uuid": VOLUME_UUID}) == 2 << 30


def test_extend_of_missing_device_raises_clearly(fakehost):
    with pytest.raises(DeviceNotFound):
        make(fakehost, attempts=2).extend_volume({"uuid": VOLUME_UUID})


def test_get_volume_paths(fakehost):
    dev = fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    c = make(fakehost)
    assert c.get_volume_paths({"uuid": VOLUME_UUID, "device_path": "/dev/nvme9n9"}) == ["/dev/nvme9n9"]
    assert c.get_volume_paths({"uuid": VOLUME_UUID}) == [dev]
    fakehost.remove_namespace("nvme0n1")
    assert c.get_volume_paths({"uuid": VOLUME_UUID}) == []


def test_scan_delays():
    assert devices.scan_delays(5, 1.0, 60) == [1, 2, 4, 8]
    assert devices.scan_delays(1, 1.0, 60) == []
    assert sum(devices.scan_delays(20, 1.0, 30)) == 30


def test_rescan_pokes_each_controller_of_a_head(fakehost):
    dev = fakehost.add_namespace("nvme0n1", VOLUME_UUID, ctrls=(0, 1))
    assert devices.rescan(fakehost.paths, dev) == ["nvme0", "nvme1"]
    assert (fakehost.paths.sys / "class/nvme/nvme1/rescan_controller").read_text() == "1"
