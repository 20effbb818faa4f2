"""os-brick's LightOSConnector interface, without os-brick's faults.

Same calls, arguments and results as ``os_brick.initiator.connectors.lightos.LightOSConnector``
(connection properties from cinder: ``uuid``, ``subsysnqn``, ``lightos_nodes``), so nova's driver
could use either. Differences on purpose (each covered by a test):

* The entry file is written atomically in discovery.d itself (``tmp.dc.*`` + rename), never moved
  in from /tmp (a cross-filesystem move is a copy the discovery-client may read half-done).
* The device wait honours ``device_scan_attempts`` (backoff, bounded by ``device_wait_timeout``),
  and the host-wide lock is not held through it (``AttachMarker`` keeps cleanup safe).
* A found device is checked against sysfs: never a stale by-id link, never a hidden path device.
* A failed connect removes what it created (the entry file) and nothing it did not create;
  while another attach of the same volume still waits on that file, the removal passes to it.
* Detach looks once: a device that is already gone is not waited for.
* Extend of a missing device raises DeviceNotFound instead of crashing on ``None``.

What needs root (the entry file, the flush) goes through ``root_helper`` when the caller is not
root (privileged.py).
"""
from __future__ import annotations

import http.client
import logging
from typing import Any, Callable

from . import devices, host
from .entries import Entry, parse_file
from .errors import DeviceNotFound, EntryFileError, FlushError, LightOSError
from .locking import AttachMarker, volume_lock
from .paths import Paths
from .privileged import RootHelper, entry_path

log = logging.getLogger(__name__)

DEVICE_SCAN_ATTEMPTS_DEFAULT = 5
DISCOVERY_CLIENT_PORT = 6060
DISCOVERY_PORT = 8009


class LightOSConnector:
    """Attach/detach LightOS volumes through the discovery-client's entry files."""

    def __init__(self, root_helper: str | None = None, driver: Any = None,
                 execute: Callable | None = None,
                 device_scan_attempts: int = DEVICE_SCAN_ATTEMPTS_DEFAULT,
                 message_queue: Any = None, *args: Any, paths: Paths | None = None,
                 scan_interval: float = 1.0, device_wait_timeout: float = 60.0,
                 dsc_port: int = DISCOVERY_CLIENT_PORT, dsc_host: str = "localhost",
                 flush: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] | None = None, **kwargs: Any) -> None:
        self.root_helper = root_helper
        self.device_scan_attempts = max(1, int(device_scan_attempts))
        self.message_queue = message_queue
        self.paths = paths or Paths()
        self.scan_interval = scan_interval
        self.device_wait_timeout = device_wait_timeout
        self.dsc_port = dsc_port
        self.dsc_host = dsc_host
        self.root = RootHelper(root_helper, self.paths)
        self._flush = flush or self.root.flush
        import time
        self._sleep = sleep or time.sleep

    @property
    def DISCOVERY_DIR_PATH(self) -> str:  # noqa: N802 - os-brick's attribute name
        return str(self.paths.discovery_dir) + "/"

    # ---- properties cinder needs ----
    @staticmethod
    def get_connector_properties(root_helper: str | None = None, *args: Any,
                                 **kwargs: Any) -> dict[str, Any]:
        """``nqn``, ``found_dsc``, ``host_ips`` (what cinder's LightOS driver requires), plus
        ``hostid`` and the DMI ``uuid`` when known. ``paths``/``dsc_port`` may be passed."""
        c = LightOSConnector(root_helper, paths=kwargs.get("paths"),
                             dsc_port=kwargs.get("dsc_port", DISCOVERY_CLIENT_PORT))
        props: dict[str, Any] = {}
        nqn = host.host_nqn(c.paths)
        found = c.find_dsc()
        if not found:
            log.debug("LightOS: discovery-client not answering on port %d", c.dsc_port)
        if not nqn:
            log.warning("LightOS: no host NQN: cinder cannot grant this host access")
            return props
        props["nqn"] = nqn
        props["found_dsc"] = found
        props["host_ips"] = c.get_ip_addresses()
        hostid = host.host_id(c.paths)
        if hostid:
            props["hostid"] = hostid
        sysuuid = host.system_uuid(c.paths)
        if sysuuid:
            props["uuid"] = sysuuid
        return props

    def get_ip_addresses(self) -> list[str]:
        return host.host_ips()

    def find_dsc(self) -> str:
        """'found' when the discovery-client's metrics endpoint answers HEAD /metrics with 200."""
        conn = http.client.HTTPConnection(self.dsc_host, self.dsc_port, timeout=5)
        try:
            conn.request("HEAD", "/metrics")
            return "found" if conn.getresponse().status == http.client.OK else ""
        except (OSError, http.client.HTTPException) as exc:
            log.debug("LightOS: discovery-client check failed: %s", exc)
            return ""
        finally:
            conn.close()

    # ---- entry files ----
    def dsc_file_name(self, uuid: str) -> str:
        return str(entry_path(self.paths, uuid))

    def entries_for(self, props: dict[str, Any]) -> list[Entry]:
        """One entry per LightOS node of the cluster, for this host's NQN."""
        nqn = host.host_nqn(self.paths)
        if not nqn:
            raise LightOSError("no host NQN (/etc/nvme/hostnqn) and none could be created")
        nodes = props.get("lightos_nodes") or {}
        if not nodes:
            raise LightOSError(f"volume {props.get('uuid')}: no lightos_nodes in the "
                               f"connection properties")
        out = []
        for ip, node in sorted(nodes.items()):
            transport = (node or {}).get("transport_type", "tcp")
            if transport != "tcp":
                raise LightOSError(f"LightOS node {ip}: transport {transport!r} is not tcp")
            out.append(Entry(traddr=str((node or {}).get("target_portal", ip)),
                             trsvcid=int((node or {}).get("target_port", DISCOVERY_PORT)),
                             subsysnqn=props["subsysnqn"], hostnqn=nqn))
        return out

    def dsc_need_connect(self, props: dict[str, Any]) -> bool:
        """Whether the entry file is missing or says something else than it should."""
        path = entry_path(self.paths, props["uuid"])
        try:
            have = parse_file(path)
        except (FileNotFoundError, EntryFileError):
            return True
        return {e.key for e in have} != {e.key for e in self.entries_for(props)}

    def dsc_connect_volume(self, props: dict[str, Any]) -> bool:
        """Write the volume's entry file unless it is already right; True when written."""
        if not self.dsc_need_connect(props):
            return False
        self.root.write_entry(props["uuid"], self.entries_for(props))
        return True

    def dsc_disconnect_volume(self, props: dict[str, Any]) -> None:
        self.root.remove_entry(props["uuid"])

    # ---- devices ----
    def wait_for_device(self, uuid: str, *, attempts: int | None = None,
                        max_wait: float | None = None,
                        spent: Callable[[float], None] | None = None) -> str | None:
        """This connector's bounded device wait. ``max_wait`` may shorten it and ``spent`` hears
        of every pause, for a wait budget shared by several volumes."""
        def sleep(seconds: float) -> None:
            if spent:
                spent(seconds)
            self._sleep(seconds)

        return devices.wait_for_device(
            self.paths, uuid, attempts=self.device_scan_attempts if attempts is None else attempts,
            interval=self.scan_interval,
            max_wait=self.device_wait_timeout if max_wait is None else max_wait, sleep=sleep)

    def get_search_path(self) -> str:
        return str(self.paths.dev)

    def get_volume_paths(self, props: dict[str, Any]) -> list[str]:
        """The device path: the one recorded at connect, else the one found now (no waiting)."""
        if props.get("device_path"):
            return [props["device_path"]]
        dev = devices.find_device(self.paths, props["uuid"]) if props.get("uuid") else None
        return [dev] if dev else []

    # ---- the three operations ----
    def connect_volume(self, connection_properties: dict[str, Any]) -> dict[str, str]:
        """Write the entry file, wait for the device; ``{'type': 'block', 'path': ...}``.

        The host-wide lock covers writing the entry file and the cleanup after the wait, not
        the wait itself (os-brick holds it throughout): one volume whose device is slow or
        never comes does not hold up attaches of the others for the whole device wait."""
        props = connection_properties
        uuid = devices.check_volume_id(props["uuid"])
        marker = AttachMarker(self.paths.attach_marker(uuid))
        with volume_lock(self.paths.lock_file):
            existing, had_file, written = self.ensure_entry_file(props)
            if not existing:
                marker.hold()
        device = existing or self._await_device(uuid, marker, written and not had_file)
        if self.message_queue is not None:
            self.message_queue.put(("add", props))
        log.info("LightOS volume %s attached as %s", uuid, device)
        return {"type": "block", "path": device}

    def _await_device(self, uuid: str, marker: AttachMarker, created: bool) -> str:
        """The device wait, outside the host-wide lock, then ``_end_wait``."""
        try:
            device = self.wait_for_device(uuid)
        except BaseException:
            self._end_wait(uuid, marker, None, created)
            raise
        device = self._end_wait(uuid, marker, device, created)
        if not device:
            raise DeviceNotFound(uuid, f"did not show up after {self.device_scan_attempts} "
                                       f"attempts")
        return device

    def _end_wait(self, uuid: str, marker: AttachMarker, device: str | None,
                  created: bool) -> str | None:
        """Back under the host-wide lock: one last look for the device. When it is not there,
        the entry file this attach created (or was handed by one that gave up) is removed,
        unless another attach of the same volume still waits on it: then it is theirs."""
        marker.release()
        with volume_lock(self.paths.lock_file):
            device = device or devices.find_device(self.paths, uuid)
            if marker.settle(created, found=bool(device)):
                self._undo_entry_file(uuid)
        return device

    def ensure_entry_file(self, props: dict[str, Any]) -> tuple[str | None, bool, bool]:
        """Under the host-wide lock, the first half of an attach: the volume's device if it is
        already there, whether its entry file existed, and whether this call wrote the file
        (written unless it is already right; not needed when the device is there and the
        properties name no nodes)."""
        uuid = devices.check_volume_id(props["uuid"])
        with volume_lock(self.paths.lock_file):
            existing = devices.find_device(self.paths, uuid)
            had_file = entry_path(self.paths, uuid).exists()
            written = bool((props.get("lightos_nodes") or not existing)
                           and self.dsc_connect_volume(props))
            return existing, had_file, written

    def _undo_entry_file(self, uuid: str) -> None:
        try:
            self.root.remove_entry(uuid)
        except LightOSError as exc:
            log.warning("LightOS: could not remove entry file of %s: %s", uuid, exc)

    def disconnect_volume(self, connection_properties: dict[str, Any], device_info: Any,
                          force: bool = False, ignore_errors: bool = False) -> None:
        """Flush the device if it is still there, then delete the entry file.

        A flush failure stops the detach unless ``force`` or ``ignore_errors`` (the data would be
        lost); every other failure is raised at the end unless ``ignore_errors``."""
        props = connection_properties
        uuid = devices.check_volume_id(props["uuid"])
        if self.message_queue is not None:
            self.message_queue.put(("delete", props))
        errors: list[Exception] = []
        with volume_lock(self.paths.lock_file):
            device = devices.find_device(self.paths, uuid)  # one look: gone means gone
            if device:
                try:
                    self._flush(device)
                except (FlushError, OSError) as exc:
                    if not (force or ignore_errors):
                        raise
                    log.warning("LightOS: %s; detaching anyway (force)", exc)
                    errors.append(exc)
            try:
                self.dsc_disconnect_volume(props)
            except LightOSError as exc:
                errors.append(exc)
        if errors and not ignore_errors:
            raise errors[-1] if len(errors) == 1 else LightOSError(
                "; ".join(str(e) for e in errors))

    def extend_volume(self, connection_properties: dict[str, Any]) -> int:
        """The device's current size in bytes (the kernel learnt it from the AEN)."""
        uuid = devices.check_volume_id(connection_properties["uuid"])
        with volume_lock(self.paths.lock_file):
            device = devices.find_device(self.paths, uuid)  # attached: there now or not at all
            if not device:
                raise DeviceNotFound(uuid, "cannot extend a volume that is not attached")
            size = devices.device_size(self.paths, device)
            if size is None:
                raise DeviceNotFound(uuid, f"{device} vanished while reading its size")
            return size
