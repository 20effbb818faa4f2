"""Startup reconnect: after a host reboot (or nova restart), bring back every LightOS volume of
every instance libvirt knows, as the LightOS nova spec promises and nova itself does not do.

Sources, cross-checked: the local attachment record (which volume, which cluster, which instance
— written at every attach/detach) and libvirt (which instances exist, and whether their domain
still has that disk, by serial or /dev path). For each volume still in use by an existing
instance: the connector re-creates the entry file if it is missing and waits for the device; if
the kernel numbered it differently than before, the record is updated and so is the persistent
definition of a stopped domain (a running one keeps its open device).

Two passes, so that a dead cluster costs one bounded wait, not one per volume: first every
missing entry file is written (each under the host-wide volume lock, held only for that), then
the devices are awaited against one shared budget (the connector's device_wait_timeout) with no
lock held, so nova's attaches and detaches are not stalled meanwhile. A volume whose device does
not show up in time keeps its entry file: its instance still uses it, and the discovery service
connects it as soon as the cluster answers.

Idempotent: an entry file that is right is not rewritten, a present device is not waited for,
and nothing is changed twice; running it twice reports "already-connected" the second time.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from . import domains
from .attachments import AttachmentRecord
from .connector import LightOSConnector
from .paths import Paths

log = logging.getLogger(__name__)

ALREADY = "already-connected"
RECONNECTED = "reconnected"
FAILED = "failed"
INSTANCE_MISSING = "instance-missing"
NOT_IN_DOMAIN = "not-in-domain"


@dataclass
class Outcome:
    instance: str
    instance_uuid: str
    volume: str
    action: str
    device_path: str = ""
    previous_path: str = ""
    domain_updated: bool = False
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        s = f"{self.instance or self.instance_uuid}  {self.volume}  {self.action}"
        if self.device_path:
            s += f"  {self.device_path}"
        if self.previous_path and self.previous_path != self.device_path:
            s += f" (was {self.previous_path}{', domain updated' if self.domain_updated else ''})"
        if self.detail:
            s += f"  — {self.detail}"
        return s


@dataclass
class _Pending:
    """A volume whose entry file has been seen to (pass 1) and whose device is awaited next."""

    uuid: str
    vol: dict
    users: list  # (Outcome, domain, disk) of the instances that still use it
    before_dev: str | None
    had_file: bool
    error: str = ""


@dataclass
class _Budget:
    """The device wait shared by all volumes: what one volume waited is gone for the next."""

    left: float

    def spend(self, seconds: float) -> None:
        self.left -= seconds


def _match_disk(disks: list[domains.BlockDisk], device_path: str, serial: str):
    for d in disks:
        if serial and d.serial == serial:
            return d
    for d in disks:
        if device_path and d.source_dev == device_path:
            return d
    return None


def reconnect(paths: Paths | None = None, *, conn: Any = None, libvirt_uri: str | None = None,
              connector: LightOSConnector | None = None, update_domains: bool = True,
              prune: bool = False) -> list[Outcome]:
    """Re-establish every recorded LightOS volume of every existing instance."""
    paths = paths or (connector.paths if connector else Paths())
    connector = connector or LightOSConnector(None, device_scan_attempts=8, paths=paths)
    record = AttachmentRecord(paths.attachments_file)
    volumes = record.volumes()
    if not volumes:
        return []
    conn = conn if conn is not None else domains.open_connection(libvirt_uri)
    out: list[Outcome] = []
    pending: list[_Pending] = []
    for vol_uuid, vol in sorted(volumes.items()):
        users = []  # (outcome, domain, disk) of instances that still use the volume
        for key, inst in sorted(vol.get("instances", {}).items()):
            name = inst.get("name", "")
            dom = domains.find_domain(conn, key if key != name else "", name)
            o = Outcome(instance=name, instance_uuid=key if key != name else "",
                        volume=vol_uuid, action="", previous_path=vol.get("device_path", ""))
            if dom is None:
                o.action, o.detail = INSTANCE_MISSING, "no such domain in libvirt"
                if prune:
                    record.remove(vol_uuid, {"uuid": key, "name": name})
                    o.detail += "; record pruned"
                out.append(o)
                continue
            o.instance = dom.name()
            disk = _match_disk(domains.domain_block_disks(dom), vol.get("device_path", ""),
                               inst.get("serial", ""))
            if disk is None:
                o.action, o.detail = NOT_IN_DOMAIN, "the domain has no disk for this volume"
                out.append(o)
                continue
            o.previous_path = disk.source_dev or o.previous_path
            users.append((o, dom, disk))
        if users:
            pending.append(_request(connector, vol_uuid, vol, users))
    budget = _Budget(connector.device_wait_timeout)
    for p in pending:
        out.extend(_finish(connector, record, p, conn, update_domains, budget))
    for o in out:
        log.info("reconnect: %s", o.line())
    return out


def _request(connector: LightOSConnector, vol_uuid: str, vol: dict, users: list) -> _Pending:
    """Pass 1: the volume's entry file, written unless it is already right."""
    props = dict(vol.get("connection") or {})
    props.setdefault("uuid", vol_uuid)
    p = _Pending(vol_uuid, vol, users, None, False)
    try:
        p.before_dev, p.had_file, _ = connector.ensure_entry_file(props)
    except Exception as exc:  # noqa: BLE001 - reported per volume, the others go on
        p.error = str(exc)
    return p


def _finish(connector: LightOSConnector, record: AttachmentRecord, p: _Pending, conn: Any,
            update_domains: bool, budget: _Budget) -> list[Outcome]:
    """Pass 2: the device, from what is left of the shared wait; the record and domains."""
    device = None
    if not p.error:
        device = p.before_dev or connector.wait_for_device(
            p.uuid, max_wait=max(0.0, budget.left), spent=budget.spend)
        if not device:
            p.error = ("its device did not show up in time; the entry file stays, so the "
                       "discovery service connects it once the cluster answers")
    if p.error:
        for o, _, _ in p.users:
            o.action, o.detail = FAILED, p.error
        return [o for o, _, _ in p.users]
    action = ALREADY if (p.before_dev == device and p.had_file) else RECONNECTED
    if p.vol.get("device_path") != device:
        record.set_device_path(p.uuid, device)
    for o, dom, disk in p.users:
        o.action, o.device_path = action, device
        if disk.source_dev and disk.source_dev != device and update_domains:
            if dom.isActive():
                o.detail = "domain running with the old path: restart it to use the new one"
            else:
                o.domain_updated = domains.replace_disk_source(conn, dom, disk.source_dev, device)
    return [o for o, _, _ in p.users]
