"""A host's /etc, /sys and /dev under a temp dir, as the kernel and udev would lay them out.

What cannot exist here (a kernel NVMe/TCP host on this machine) is stood in for by the same files
the kernel would create: /sys/class/block/<dev>/{wwid,uuid,nsid,size}, /sys/class/nvme/<ctrl>,
/dev/<dev> nodes (plain files) and udev's /dev/disk/by-id links. The layout follows the recorded
6.1 tree (tests/kernel/sysfs_tree): multipath heads nvme<S>n<N>, hidden paths nvme<S>c<C>n<N>.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from lightos_driver.paths import Paths


SUBSYSNQN = "nqn.2016-01.com.lightbitslabs:uuid:f4a89ce0-9fc2-4900-bfa3-00ad27995e7b"
VOLUME_UUID = "926e6df8-73e1-11ec-a624-07ba3880f6cd"
NODES = ["10.17.167.4", "10.17.167.5", "10.17.167.6"]


def connection_props(uuid: str = VOLUME_UUID, nodes=NODES, subsysnqn: str = SUBSYSNQN) -> dict:
    """What cinder's LightOS driver returns as connection_info['data']."""
    return {"uuid": uuid, "subsysnqn": subsysnqn,
            "lightos_nodes": {ip: {"target_portal": ip, "target_port": 8009,
                                   "transport_type": "tcp"} for ip in nodes}}


class FakeHost:
    def __init__(self, root: Path, hostnqn: str | None = "nqn.2014-08.org.nvmexpress:uuid:"
                 "11111111-2222-4333-8444-555555555555") -> None:
        self.root = Path(root)
        self.paths = Paths.under(self.root)
        for p in (self.paths.etc_nvme, self.paths.discovery_dir, self.paths.internal_dir,
                  self.paths.state_dir, self.paths.class_block, self.paths.by_id,
                  self.paths.sys / "class" / "nvme", self.paths.sys / "class" / "nvme-subsystem"):
            p.mkdir(parents=True, exist_ok=True)
        if hostnqn:
            self.paths.hostnqn_file.write_text(hostnqn + "\n")
            if hostnqn.startswith("nqn.2014-08.org.nvmexpress:uuid:"):
                self.paths.hostid_file.write_text(hostnqn.rsplit(":", 1)[1] + "\n")

    @property
    def hostnqn(self) -> str:
        return self.paths.hostnqn_file.read_text().strip()

    def add_namespace(self, name: str, uuid: str, *, size_bytes: int = 1 << 30, nsid: int = 1,
                      link: bool = True, dev_node: bool = True, wwid: bool = True,
                      ctrls: tuple[int, ...] = ()) -> str:
        """A namespace block device (and, for a head nvme<S>n<N>, hidden paths per controller)."""
        d = self.paths.class_block / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "nsid").write_text(f"{nsid}\n")
        (d / "size").write_text(f"{size_bytes // 512}\n")
        (d / "uuid").write_text(f"{uuid}\n")
        if wwid:
            (d / "wwid").write_text(f"uuid.{uuid}\n")
        if dev_node:
            (self.paths.dev / name).write_bytes(b"")
        if link:
            self.link(uuid, name)
        s, n = name[4:].split("n")
        for c in ctrls:
            self.add_controller(f"nvme{c}")
            path = self.paths.class_block / f"nvme{s}c{c}n{n}"
            path.mkdir(exist_ok=True)
            (path / "nsid").write_text(f"{nsid}\n")
            (path / "wwid").write_text(f"uuid.{uuid}\n")
            (path / "uuid").write_text(f"{uuid}\n")
            (path / "ana_state").write_text("optimized\n")
            ctrl_dir = self.paths.sys / "class" / "nvme" / f"nvme{c}"
            os.symlink(path, ctrl_dir / path.name)
        return str(self.paths.dev / name)

    def add_controller(self, name: str, subsysnqn: str = "nqn.2016-01.com.lightbitslabs:uuid:x",
                       traddr: str = "10.0.0.1", trsvcid: str = "4420",
                       hostnqn: str | None = None, hostid: str | None = None,
                       state: str = "live") -> Path:
        d = self.paths.sys / "class" / "nvme" / name
        if d.exists():
            return d
        d.mkdir(parents=True)
        for attr, value in {"transport": "tcp", "address": f"traddr={traddr},trsvcid={trsvcid}",
                            "state": state, "subsysnqn": subsysnqn,
                            "hostnqn": hostnqn or self.hostnqn,
                            "hostid": hostid or self.paths.hostid_file.read_text().strip(),
                            "cntlid": "1", "rescan_controller": "", "delete_controller": ""
                            }.items():
            (d / attr).write_text(attr == "rescan_controller" and "" or value + "\n")
        return d

    def link(self, uuid: str, name: str) -> None:
        link = self.paths.by_id / f"nvme-uuid.{uuid}"
        if os.path.lexists(link):
            link.unlink()
        os.symlink(f"../../{name}", link)

    def remove_namespace(self, name: str) -> None:
        shutil.rmtree(self.paths.class_block / name, ignore_errors=True)
        try:
            (self.paths.dev / name).unlink()
        except FileNotFoundError:
            pass

    def resize(self, name: str, size_bytes: int) -> None:
        (self.paths.class_block / name / "size").write_text(f"{size_bytes // 512}\n")
