"""Where the driver reads and writes, as one value passed everywhere.

Why a value and not constants: the unit tests build a whole host (/etc/nvme, the discovery-client
directories, a sysfs and a /dev tree) under a temp dir, and the kernel VM tests use the real ones.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

ENTRY_TMP_PREFIX = "tmp.dc."  # discovery-client ignores files with this prefix (writers' temp files)


@dataclass(frozen=True)
class Paths:
    etc_nvme: Path = Path("/etc/nvme")
    discovery_dir: Path = Path("/etc/discovery-client/discovery.d")
    internal_dir: Path = Path("/etc/discovery-client/internal")
    state_dir: Path = Path("/var/lib/lightos-driver")
    sys: Path = Path("/sys")
    dev: Path = Path("/dev")
    #: The temp dir standing in for / (``under``); None on a real host.
    root: Path | None = None

    @classmethod
    def under(cls, root: str | os.PathLike) -> "Paths":
        """Every location below ``root`` (a temp dir standing in for /)."""
        r = Path(root)
        d = cls()
        return cls(root=r, **{k: r / str(getattr(d, k)).lstrip("/")
                              for k in d.__dataclass_fields__ if k != "root"})

    def with_(self, **kw: str | os.PathLike) -> "Paths":
        return replace(self, **{k: Path(v) for k, v in kw.items()})

    @property
    def hostnqn_file(self) -> Path:
        return self.etc_nvme / "hostnqn"

    @property
    def hostid_file(self) -> Path:
        return self.etc_nvme / "hostid"

    @property
    def internal_json(self) -> Path:
        return self.internal_dir / "internal.json"

    @property
    def attachments_file(self) -> Path:
        return self.state_dir / "attachments.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "volume-ops.lock"

    def attach_marker(self, uuid: str) -> Path:
        """Held by each attach of volume ``uuid`` while it waits for the device (locking.py)."""
        return self.state_dir / "attaching" / f"{uuid}.lock"

    @property
    def by_id(self) -> Path:
        return self.dev / "disk" / "by-id"

    @property
    def class_block(self) -> Path:
        return self.sys / "class" / "block"
