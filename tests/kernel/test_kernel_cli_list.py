"""`pynvmetcp list` on the recorded sysfs tree (see test_kernel_sysfs.py for what it holds)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pynvmetcp.cli import list as cli_list

TREE = Path(__file__).parent / "sysfs_tree"


def _run(capsys, *argv: str) -> str:
    ap = argparse.ArgumentParser()
    cli_list.register(ap.add_subparsers())
    assert cli_list.run(ap.parse_args(["list", "--sysfs", str(TREE), *argv])) == 0
    return capsys.readouterr().out


def test_table_like_nvme_list(capsys):
    lines = _run(capsys).splitlines()
    assert lines[0].split()[:3] == ["Node", "Ctrl", "Subsystem"]
    body = [line.split() for line in lines[2:]]
    assert [(r[0], r[1], r[3], r[5]) for r in body] == [
        ("/dev/nvme0n1", "nvme0", "127.0.0.1:4420", "1"),
        ("/dev/nvme0n1", "nvme1", "127.0.0.1:4421", "1"),  # second path, same head
        ("/dev/nvme2n1", "nvme2", "127.0.0.1:4420", "1"),
        ("/dev/nvme3", "nvme3", "127.0.0.1:8009", "-"),  # discovery controller
    ]
    assert "64.00 MiB" in lines[2] and "6f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b" in lines[2]
    assert "c0n1" not in "\n".join(lines)  # hidden path devices are never listed as nodes


def test_json(capsys):
    doc = json.loads(_run(capsys, "--json"))
    ctrls = {c["name"]: c for c in doc["controllers"]}
    assert set(ctrls) == {"nvme0", "nvme1", "nvme2", "nvme3"}
    ns = ctrls["nvme1"]["namespaces"][0]
    assert ns["device"] == "/dev/nvme0n1" and ns["size_bytes"] == 64 << 20
    assert [p["name"] for p in ns["paths"]] == ["nvme0c0n1", "nvme0c1n1"]
    assert ctrls["nvme3"]["discovery"] and ctrls["nvme3"]["namespaces"] == []


def test_nothing_connected(capsys, tmp_path):
    ap = argparse.ArgumentParser()
    cli_list.register(ap.add_subparsers())
    assert cli_list.run(ap.parse_args(["list", "--sysfs", str(tmp_path)])) == 0
    assert capsys.readouterr().out.strip() == "no NVMe controllers"
