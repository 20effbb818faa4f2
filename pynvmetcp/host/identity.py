"""Connection parameters and the host's identity (host NQN / host ID), as nvme-cli finds them."""
from __future__ import annotations

import re
import uuid as _uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..spec.fabrics import NQN_MAX_LEN
from ..spec.opcodes import NVME_PORT
from .procedures import Identity

_NQN = re.compile(r"^nqn\.\d{4}-(0[1-9]|1[0-2])\.[^:\s]+(:.+)?$")
UUID_NQN_PREFIX = "nqn.2014-08.org.nvmexpress:uuid:"


def validate_nqn(nqn: str, what: str = "NQN") -> str:
    """Reject what targets refuse anyway, with a readable reason (pitfall 18)."""
    if not nqn or len(nqn.encode()) > NQN_MAX_LEN:
        raise ValueError(f"{what} must be 1..{NQN_MAX_LEN} bytes: {nqn!r}")
    if nqn.startswith(UUID_NQN_PREFIX):
        _uuid.UUID(nqn[len(UUID_NQN_PREFIX):])
        return nqn
    if nqn != "nqn.2014-08.org.nvmexpress.discovery" and not _NQN.match(nqn):
        raise ValueError(f"{what} is not of the form nqn.yyyy-mm.reverse.domain[:name]: {nqn!r}")
    return nqn


def default_identity(etc: Path = Path("/etc/nvme")) -> Identity:
    """/etc/nvme/hostnqn and /etc/nvme/hostid when present (what the kernel host already uses),
    else an identity derived from /etc/machine-id so that it is stable on this machine."""
    hostnqn = _read(etc / "hostnqn")
    hostid = _read(etc / "hostid")
    if hostid:
        hid = _uuid.UUID(hostid)
    elif hostnqn and hostnqn.startswith(UUID_NQN_PREFIX):
        hid = _uuid.UUID(hostnqn[len(UUID_NQN_PREFIX):])
    else:
        machine = _read(Path("/etc/machine-id")) or _uuid.uuid4().hex
        hid = _uuid.uuid5(_uuid.NAMESPACE_OID, "pynvmetcp:" + machine)
    return Identity(hostnqn or UUID_NQN_PREFIX + str(hid), hid)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@dataclass
class ConnectParams:
    """What ``connect()`` takes; the names follow nvme-cli / the kernel's fabrics options."""

    traddr: str
    subnqn: str
    trsvcid: int = NVME_PORT
    hostnqn: str | None = None
    hostid: str | _uuid.UUID | None = None
    nr_io_queues: int = 1
    queue_size: int = 128
    hdr_digest: bool = False
    data_digest: bool = False
    kato: float = 5.0  # seconds; 0 disables keep-alive
    timeout: float = 30.0  # per command
    connect_timeout: float = 10.0  # ICResp wait, as the Linux host (pitfall 17)
    hpda: int = 0
    disable_sqflow: bool = False
    ctrl_loss_tmo: float = 600.0
    reconnect_delay: float = 10.0
    identity: Identity = field(init=False)

    def __post_init__(self) -> None:
        validate_nqn(self.subnqn, "subsystem NQN")
        base = default_identity()
        hostnqn = validate_nqn(self.hostnqn, "host NQN") if self.hostnqn else base.hostnqn
        if self.hostid:
            hostid = self.hostid if isinstance(self.hostid, _uuid.UUID) else _uuid.UUID(
                str(self.hostid))
        elif self.hostnqn and self.hostnqn.startswith(UUID_NQN_PREFIX):
            hostid = _uuid.UUID(self.hostnqn[len(UUID_NQN_PREFIX):])
        else:
            hostid = base.hostid
        self.identity = Identity(hostnqn, hostid)
        if not 2 <= self.queue_size <= 1024:
            raise ValueError("queue_size must be 2..1024")
        if self.nr_io_queues < 0:
            raise ValueError("nr_io_queues must be ≥ 0")
