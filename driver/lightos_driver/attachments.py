"""The local attachment record: which LightOS volume is attached to which instance on this host.

Why keep one: after a reboot the kernel's controllers are gone and nova does not re-attach
(unless resume_guests_state_on_host_boot), yet the spec promises the driver re-establishes every
connection. The domain XML alone cannot do it: it names /dev/nvmeXnY and a serial, not the cluster
(subsystem NQN, node addresses) needed to reconnect. So each attach records the connection
properties cinder gave, and each detach removes them; written atomically (a crash mid-write must
never lose the record of every other volume).

Format (JSON): {"version": 1, "volumes": {<uuid>: {"connection": {uuid, subsysnqn, lightos_nodes},
"device_path": "/dev/nvme0n1", "instances": {<instance uuid>: {"name", "serial", "target_dev",
"attached_at"}}}}}
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .atomic import write_json_atomic
from .locking import volume_lock

log = logging.getLogger(__name__)
VERSION = 1
CONNECTION_KEYS = ("uuid", "subsysnqn", "lightos_nodes")


def instance_ident(instance: Any) -> tuple[str, str]:
    """(uuid, libvirt domain name) of a nova Instance, a dict, or a bare name/uuid string."""
    if instance is None:
        return "", ""
    if isinstance(instance, str):
        return instance, instance
    if isinstance(instance, dict):
        return str(instance.get("uuid") or ""), str(instance.get("name") or "")
    return str(getattr(instance, "uuid", "") or ""), str(getattr(instance, "name", "") or "")


class AttachmentRecord:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_file = self.path.with_name(self.path.name + ".lock")

    def load(self, *, set_aside: bool = True) -> dict[str, Any]:
        """The record; a corrupt one is moved aside (kept for the operator) and starts empty.

        Why not raise: a record that cannot be parsed would otherwise block every attach and
        detach on this host, while the volumes themselves are fine; only the reboot reconnect
        loses what it listed, and the log says where the old file went. A reader that must not
        take "empty" for "nothing attached" (the service deciding what to disconnect) passes
        ``set_aside=False`` and gets the ValueError."""
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("volumes", {}), dict):
                raise ValueError("not an attachment record")
        except FileNotFoundError:
            return {"version": VERSION, "volumes": {}}
        except ValueError as exc:
            if not set_aside:
                raise ValueError(f"attachment record {self.path} is corrupt: {exc}") from None
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}")
            try:
                self.path.rename(aside)
            except OSError as err:
                log.error("attachment record %s is corrupt (%s) and cannot be moved aside: %s",
                          self.path, exc, err)
                raise
            log.error("attachment record %s was corrupt (%s): moved to %s, starting empty; the "
                      "startup reconnect will not know the volumes it listed", self.path, exc,
                      aside)
            return {"version": VERSION, "volumes": {}}
        data.setdefault("volumes", {})
        return data

    def _save(self, data: dict[str, Any]) -> None:
        data["version"] = VERSION
        write_json_atomic(self.path, data, prefix=".attachments.")

    def volumes(self) -> dict[str, Any]:
        return self.load()["volumes"]

    def add(self, props: dict[str, Any], instance: Any, *, device_path: str | None = None,
            serial: str | None = None, target_dev: str | None = None) -> None:
        inst_uuid, name = instance_ident(instance)
        with volume_lock(self._lock_file):
            data = self.load()
            vol = data["volumes"].setdefault(props["uuid"], {"instances": {}})
            vol["connection"] = {k: props[k] for k in CONNECTION_KEYS if k in props}
            if device_path:
                vol["device_path"] = device_path
            key = inst_uuid or name or "-"
            rec = vol["instances"].get(key, {})
            rec.update({"name": name or rec.get("name", ""),
                        "attached_at": rec.get("attached_at")
                        or datetime.now(timezone.utc).isoformat()})
            if serial:
                rec["serial"] = serial
            if target_dev:
                rec["target_dev"] = target_dev
            vol["instances"][key] = rec
            self._save(data)

    def remove(self, volume_uuid: str, instance: Any) -> int:
        """Forget one instance's use of a volume; returns how many instances still use it."""
        inst_uuid, name = instance_ident(instance)
        with volume_lock(self._lock_file):
            data = self.load()
            vol = data["volumes"].get(volume_uuid)
            if vol is None:
                return 0
            for key in (inst_uuid, name, "-"):
                if key and key in vol["instances"]:
                    del vol["instances"][key]
                    break
            left = len(vol["instances"])
            if not left:
                del data["volumes"][volume_uuid]
            self._save(data)
            return left

    def users(self, volume_uuid: str) -> list[str]:
        return list(self.volumes().get(volume_uuid, {}).get("instances", {}))

    def set_device_path(self, volume_uuid: str, device_path: str) -> None:
        with volume_lock(self._lock_file):
            data = self.load()
            if volume_uuid in data["volumes"]:
                data["volumes"][volume_uuid]["device_path"] = device_path
                self._save(data)

    def drop_instance_everywhere(self, instance_key: str) -> list[str]:
        """Forget an instance that no longer exists; returns the volumes it held."""
        with volume_lock(self._lock_file):
            data = self.load()
            held = []
            for vid, vol in list(data["volumes"].items()):
                if instance_key in vol["instances"]:
                    del vol["instances"][instance_key]
                    held.append(vid)
                    if not vol["instances"]:
                        del data["volumes"][vid]
            if held:
                self._save(data)
            return held

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return iter(self.volumes().items())
