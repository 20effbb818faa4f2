"""Finding a LightOS volume's block device by its UUID, and reading its size.

The namespace UUID LightOS reports is the volume UUID, so the kernel exposes it in two places:
udev's ``/dev/disk/by-id/nvme-uuid.<uuid>`` link and sysfs ``/sys/class/block/<dev>/wwid``
(``uuid.<uuid>``, also ``…/uuid``). Only ``nvme<S>n<N>`` devices are handed out: with native
multipath every controller also has a hidden path device ``nvme<S>c<C>n<N>`` that has no /dev node
and must never reach libvirt; partitions (``nvme0n1p1``) are not volumes either.

"Never a wrong device": a by-id link is trusted only if sysfs agrees that the device it points to
carries this UUID (udev may lag behind, leaving a stale link to a reused name).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import time
from pathlib import Path
from typing import Callable

from .errors import FlushError
from .paths import Paths

log = logging.getLogger(__name__)
SECTOR = 512
BLKFLSBUF = 0x1261  # blockdev --flushbufs
_HEAD = re.compile(r"^nvme\d+n\d+$")
_VOLUME_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_volume_id(uuid: str) -> str:
    """A volume UUID becomes a file name and a sysfs key: refuse anything path-like."""
    if not isinstance(uuid, str) or not _VOLUME_ID.match(uuid):
        raise ValueError(f"not a usable volume UUID: {uuid!r}")
    return uuid


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def sysfs_has_uuid(paths: Paths, name: str, uuid: str) -> bool | None:
    """Whether sysfs says block device ``name`` is namespace ``uuid`` (None: no such device)."""
    d = paths.class_block / name
    if not d.exists():
        return None
    want = uuid.lower()
    wwid = _read(d / "wwid")
    if wwid is not None and wwid.lower() == f"uuid.{want}":
        return True
    nsuuid = _read(d / "uuid")
    return nsuuid is not None and nsuuid.lower() == want


def find_by_link(paths: Paths, uuid: str) -> str | None:
    """/dev/nvmeXnY through udev's by-id link, when sysfs confirms it."""
    link = paths.by_id / f"nvme-uuid.{uuid}"
    if not os.path.lexists(link):
        return None
    target = Path(os.path.realpath(link))
    name = target.name
    dev_root = Path(os.path.realpath(paths.dev))
    if not _HEAD.match(name) or target.parent != dev_root:
        log.warning("ignoring %s → %s: not an NVMe namespace device", link, target)
        return None
    if not target.exists():
        return None
    if sysfs_has_uuid(paths, name, uuid) is not True:
        log.warning("ignoring stale link %s → %s: sysfs does not show uuid %s there",
                    link, target, uuid)
        return None
    return str(paths.dev / name)


def find_by_sysfs(paths: Paths, uuid: str) -> str | None:
    """/dev/nvmeXnY whose sysfs wwid/uuid is this UUID (hidden path devices skipped)."""
    try:
        names = sorted(n for n in os.listdir(paths.class_block) if _HEAD.match(n))
    except FileNotFoundError:
        return None
    found = [n for n in names if sysfs_has_uuid(paths, n, uuid) and (paths.dev / n).exists()]
    if len(found) > 1:
        log.warning("volume %s is visible as %s (native multipath off?); using %s",
                    uuid, ", ".join(found), found[0])
    return str(paths.dev / found[0]) if found else None


def find_device(paths: Paths, uuid: str) -> str | None:
    """One look, no waiting: the by-id link first (udev's answer), then sysfs."""
    try:
        dev = find_by_link(paths, uuid)
    except OSError as exc:
        log.debug("by-id lookup of %s failed: %s", uuid, exc)
        dev = None
    return dev or find_by_sysfs(paths, uuid)


def scan_delays(attempts: int, interval: float, max_wait: float) -> list[float]:
    """Sleeps between ``attempts`` looks: ``interval`` doubling each time, never more than
    ``max_wait`` in total (os-brick's backoff retry, but bounded)."""
    delays, total, d = [], 0.0, interval
    for _ in range(max(0, attempts - 1)):
        d = min(d, max(0.0, max_wait - total))
        delays.append(d)
        total += d
        d *= 2
    return delays


def wait_for_device(paths: Paths, uuid: str, *, attempts: int = 5, interval: float = 1.0,
                    max_wait: float = 60.0,
                    sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Look up to ``attempts`` times (at least once), sleeping per ``scan_delays``."""
    delays = scan_delays(max(1, attempts), interval, max_wait)
    for i in range(max(1, attempts)):
        dev = find_device(paths, uuid)
        if dev:
            return dev
        if i < len(delays):
            log.debug("volume %s: no device yet (attempt %d/%d), retrying in %.1fs",
                      uuid, i + 1, attempts, delays[i])
            sleep(delays[i])
    return None


def device_size(paths: Paths, device: str) -> int | None:
    """Size in bytes from /sys/class/block/<dev>/size (512-byte sectors), None if unknown."""
    text = _read(paths.class_block / Path(device).name / "size")
    try:
        return int(text) * SECTOR if text is not None else None
    except ValueError:
        return None


def flush_device(device: str) -> None:
    """blockdev --flushbufs: write back and drop the device's buffers (BLKFLSBUF)."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # gone already: nothing buffered can reach it any more
    except OSError as exc:
        raise FlushError(f"cannot open {device} to flush it: {exc.strerror}") from exc
    try:
        try:
            fcntl.ioctl(fd, BLKFLSBUF)
        except OSError as exc:
            if exc.errno not in (errno.ENOTTY, errno.EINVAL):  # not a block device: fsync
                raise
            os.fsync(fd)
    except OSError as exc:
        raise FlushError(f"flushing {device} failed: {exc.strerror}") from exc
    finally:
        os.close(fd)


def controllers_of(paths: Paths, device: str) -> list[str]:
    """The controllers (nvmeN) through which a namespace device is reached."""
    from pynvmetcp.kernel import Sysfs

    name = Path(device).name
    sysfs = Sysfs(paths.sys, dev_root=str(paths.dev))
    ns = sysfs.namespace(name)
    ctrls = [p.controller for p in ns.paths] if ns else []
    if not ctrls:
        parent = paths.class_block / name / "device"
        if parent.exists():
            ctrls = [Path(os.path.realpath(parent)).name]
    return [c for c in ctrls if re.match(r"^nvme\d+$", c)]


def rescan(paths: Paths, device: str) -> list[str]:
    """Ask each controller of ``device`` to re-read its namespaces (sizes); returns those asked.

    Why: the kernel learns a new size from the Namespace Attribute Changed event; a rescan is the
    fallback when that event was lost (controller reconnecting at the time)."""
    from pynvmetcp.kernel import Sysfs

    sysfs = Sysfs(paths.sys, dev_root=str(paths.dev))
    done = []
    for ctrl in controllers_of(paths, device):
        try:
            sysfs.rescan(ctrl)
            done.append(ctrl)
        except Exception as exc:  # noqa: BLE001 - best effort, the size read decides
            log.debug("rescan of %s failed: %s", ctrl, exc)
    return done
