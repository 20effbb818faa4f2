"""The connector's root operations through ``root_helper``, as nova-compute (not root) runs them,
and the privileged side refusing what it must not do.

This test process is root and cannot become an unprivileged user whose helper regains root, so
the connector's ``os.geteuid`` is stood in for (the only thing mocked here). The helper itself is
real: a shell prefix that logs its command line and runs it in another process, as rootwrap or
sudo would after their own checks."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from fakehost import NODES, VOLUME_UUID, connection_props
from lightos_driver import privileged
from lightos_driver.connector import LightOSConnector
from lightos_driver.entries import parse_file
from lightos_driver.errors import FlushError


@pytest.fixture
def helper(monkeypatch, tmp_path):
    """(root_helper, log of the command lines it ran) for a caller that is not root."""
    monkeypatch.setattr(privileged.os, "geteuid", lambda: 1000)
    log = tmp_path / "helper.log"
    script = f'printf "%s\\n" "$*" >> {shlex.quote(str(log))}; exec "$@"'
    return f"sh -c {shlex.quote(script)} root-helper", log


def test_attach_and_detach_through_the_root_helper(fakehost, helper):
    root_helper, log = helper
    dev = fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    c = LightOSConnector(root_helper, paths=fakehost.paths, sleep=lambda s: None)
    assert c.connect_volume(connection_props())["path"] == dev
    conf = fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf"
    assert [e.traddr for e in parse_file(conf)] == NODES
    assert log.read_text().splitlines() == [
        f"{sys.executable} -m lightos_driver.privileged write-entry {VOLUME_UUID} "
        f"--paths-root {fakehost.paths.root}"]
    # the stand-in device is a plain file: blockdev refuses it, and the detach stops there
    with pytest.raises(FlushError, match="^blockdev --flushbufs .*nvme0n1 .*Inappropriate ioctl"):
        c.disconnect_volume(connection_props(), {"type": "block", "path": dev})
    assert conf.exists()
    with pytest.raises(FlushError):  # forced: detached all the same, the failure reported
        c.disconnect_volume(connection_props(), None, force=True)
    assert not conf.exists()
    assert log.read_text().splitlines()[1:] == [
        f"blockdev --flushbufs {dev}", f"blockdev --flushbufs {dev}",
        f"{sys.executable} -m lightos_driver.privileged remove-entry {VOLUME_UUID} "
        f"--paths-root {fakehost.paths.root}"]


def privileged_run(fakehost, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightos_driver.privileged", *args,
                           privileged.ROOT_OPTION, str(fakehost.paths.root)],
                          input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("uuid, stdin, why", [
    ("../../../etc/cron.d/x", "-t tcp -a 10.0.0.1 -s 8009 -q nqn.h -n nqn.s\n",
     "not a usable volume UUID"),
    (VOLUME_UUID, "* * * * * root sh -c 'id'\n", "line 1"),
    (VOLUME_UUID, "# nothing but a comment\n", "no entries"),
])
def test_the_privileged_side_refuses_what_it_must_not_write(fakehost, uuid, stdin, why):
    done = privileged_run(fakehost, "write-entry", uuid, stdin=stdin)
    assert done.returncode == 1 and why in done.stderr and done.stderr.count("\n") == 1
    assert os.listdir(fakehost.paths.discovery_dir) == []


def test_the_privileged_side_rewrites_what_it_is_given(fakehost):
    line = f"-t tcp -a 10.0.0.1 -s 8009 -q {fakehost.hostnqn} -n nqn.s"
    done = privileged_run(fakehost, "write-entry", VOLUME_UUID,
                          stdin=f"{line}   # a comment the caller added\n")
    assert done.returncode == 0, done.stderr
    text = (fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf").read_text()
    assert "a comment the caller added" not in text and text.endswith(line + "\n")
