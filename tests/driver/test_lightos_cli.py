"""The two commands as separate processes: the service's metrics endpoint as os-brick probes it,
clean stop on SIGTERM, and the systemd unit's command line."""
from __future__ import annotations

import configparser
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lightos_driver.connector import LightOSConnector

pytest.importorskip("prometheus_client", reason="the driver extra is required")
ROOT = Path(__file__).resolve().parents[2]


def test_serve_answers_found_dsc_and_stops_on_sigterm(fakehost):
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightos_driver.cli_dc", "serve", "--root", str(fakehost.root),
         "--metrics-port", "0", "--no-reconnect"],  # the default host: [::], dual stack
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        started = json.loads(line)
        assert started["watch"] == "inotify"
        conn = LightOSConnector(None, paths=fakehost.paths, dsc_port=started["metrics_port"],
                                dsc_host="127.0.0.1")
        assert conn.find_dsc() == "found"
        props = LightOSConnector.get_connector_properties(
            None, paths=fakehost.paths, dsc_port=started["metrics_port"])
        assert props["found_dsc"] == "found"  # via "localhost", whichever family it gives
        assert (fakehost.paths.internal_json).exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_connector_properties_command(fakehost):
    run = subprocess.run([sys.executable, "-m", "lightos_driver.cli", "connector-properties",
                          "--root", str(fakehost.root), "--dsc-port", "1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    props = json.loads(run.stdout)
    assert props["nqn"] == fakehost.hostnqn and props["found_dsc"] == ""


def test_errors_are_one_line(fakehost):
    run = subprocess.run([sys.executable, "-m", "lightos_driver.cli", "extend", "--uuid",
                          "no-such-volume", "--attempts", "1", "--root", str(fakehost.root)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0 and "not found" in run.stderr


@pytest.mark.parametrize("module,argv,says", [
    ("cli", ["attach", "--uuid", "u"], "the following arguments are required: --subsysnqn, --node"),
    ("cli", [], "the following arguments are required: cmd"),
    ("cli", ["extend", "--uuid", "u", "--attempts", "x"], "argument --attempts: invalid int"),
    ("cli_dc", ["serve", "--metrics-port", "p"], "argument --metrics-port: invalid int"),
])
def test_usage_errors_are_one_line(module, argv, says):
    run = subprocess.run([sys.executable, "-m", f"lightos_driver.{module}", *argv],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and says in run.stderr, run.stderr


def test_systemd_unit_runs_the_service():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(ROOT / "driver/systemd/lightos-discovery-client.service")
    argv = unit["Service"]["ExecStart"].split()
    assert os.path.basename(argv[0]) == "lightos-discovery-client" and argv[1] == "serve"
    assert unit["Service"]["Restart"] == "always"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
