"""The option string written to /dev/nvme-fabrics, and the kernel's answers, as pure functions.

The kernel host is configured with one comma-separated ``key=value`` string per controller.
Which keys exist depends on the running kernel, and an unknown key makes the whole connect fail
with EINVAL, so the string is built against the kernel's own list: reading a fresh
/dev/nvme-fabrics fd (without writing) returns a template such as
``instance=-1,cntlid=-1,transport=%s,traddr=%s,...,duplicate_connect,...,tos=%d``, which
:func:`parse_supported` turns into a table. Options the caller asked for that the kernel lacks
raise :class:`UnsupportedOption` (silently dropping ``data_digest`` would connect without the
integrity the caller asked for); options left at ``None`` are never sent, so the kernel's own
defaults apply.

The parameter names are those of the userspace ``connect()`` (``ConnectParams``), so one set of
keyword arguments works for both paths; the userspace-only ones are accepted and ignored.
"""
from __future__ import annotations

import math
import uuid as _uuid
from dataclasses import dataclass
from typing import Mapping

from ..errors import NvmeTcpError
from ..spec.fabrics import NQN_MAX_LEN
from ..spec.opcodes import NVME_PORT

FABRICS_DEV = "/dev/nvme-fabrics"

#: What a connect with the kernel's default values would write for these keys (fabrics.c).
KERNEL_DEFAULTS = {"queue_size": 128, "ctrl_loss_tmo": 600, "reconnect_delay": 10,
                   "keep_alive_tmo": 5, "fast_io_fail_tmo": -1}
QUEUE_SIZE_MIN, QUEUE_SIZE_MAX = 16, 1024

#: Parameters of ``ConnectParams`` that have no kernel option (the kernel chooses them itself).
USERSPACE_ONLY = frozenset({"timeout", "connect_timeout", "hpda"})


class UnsupportedOption(NvmeTcpError):
    """The running kernel does not know an option the caller asked for."""


@dataclass(frozen=True, slots=True)
class ConnectReply:
    """What the kernel answers to a successful connect: the controller is /dev/nvme<instance>."""

    instance: int
    cntlid: int

    @property
    def name(self) -> str:
        return f"nvme{self.instance}"


def parse_supported(template: str) -> dict[str, str | None]:
    """Parse the kernel's option template: ``{name: "%s" | "%d" | None (a flag)}``.

    ``instance`` and ``cntlid`` head the template but are answers, not options: they are dropped.
    """
    out: dict[str, str | None] = {}
    for token in template.strip().split(","):
        if not token:
            continue
        name, eq, fmt = token.partition("=")
        if name in ("instance", "cntlid"):
            continue
        out[name] = fmt if eq else None
    return out


def read_supported(path: str = FABRICS_DEV) -> dict[str, str | None]:
    """The options of the running kernel, read from a fresh fd (a used one answers its connect)."""
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        return parse_supported(os.read(fd, 4096).decode())
    finally:
        os.close(fd)


def parse_reply(text: str) -> ConnectReply:
    """``instance=N,cntlid=M`` (followed by a newline) → ConnectReply."""
    fields = dict(tok.split("=", 1) for tok in text.strip().split(",") if "=" in tok)
    try:
        return ConnectReply(int(fields["instance"]), int(fields["cntlid"]))
    except (KeyError, ValueError):
        raise NvmeTcpError(f"unexpected answer from the kernel: {text!r}") from None


def _seconds(name: str, value: float | int) -> int:
    """The kernel takes whole seconds; round up so a short positive timeout never becomes 0."""
    if value is None:
        raise TypeError(name)
    v = float(value)
    if v < 0:
        return -1
    return int(math.ceil(v))


def _check_value(name: str, value: str) -> str:
    if not value or "," in value or "\n" in value or "=" in value:
        raise ValueError(f"{name} cannot be written as a kernel option: {value!r}")
    return value


def _nqn(name: str, value: str) -> str:
    if len(value.encode()) >= NQN_MAX_LEN:
        raise ValueError(f"{name} must be shorter than {NQN_MAX_LEN} bytes (kernel limit)")
    return _check_value(name, value)


def build_options(traddr: str, subnqn: str, trsvcid: int | str = NVME_PORT, *,
                  hostnqn: str | None = None, hostid: str | _uuid.UUID | None = None,
                  nr_io_queues: int | None = None, queue_size: int | None = None,
                  kato: float | None = None, keep_alive_tmo: float | None = None,
                  ctrl_loss_tmo: float | None = None, reconnect_delay: float | None = None,
                  fast_io_fail_tmo: float | None = None, hdr_digest: bool = False,
                  data_digest: bool = False, host_traddr: str | None = None,
                  host_iface: str | None = None, tos: int | None = None,
                  duplicate_connect: bool = False, disable_sqflow: bool = False,
                  nr_write_queues: int | None = None, nr_poll_queues: int | None = None,
                  discovery: bool = False, transport: str = "tcp",
                  supported: Mapping[str, str | None] | None = None,
                  **userspace_only: object) -> str:
    """The option string for one connect.

    ``kato`` (seconds, the userspace name) and ``keep_alive_tmo`` (the kernel name) are the same
    thing; give one. Timeouts are seconds, rounded up; a negative ``ctrl_loss_tmo`` means
    "reconnect forever" and a negative ``fast_io_fail_tmo`` "never fail fast", as in the kernel.
    ``supported`` is the table of :func:`parse_supported`; None skips the check (for tests).
    """
    unknown = set(userspace_only) - USERSPACE_ONLY
    if unknown:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
    if userspace_only.get("hpda"):
        raise ValueError("the kernel host always uses HPDA 0")
    if kato is not None and keep_alive_tmo is not None and float(kato) != float(keep_alive_tmo):
        raise ValueError("give kato or keep_alive_tmo, not both")
    if keep_alive_tmo is None:
        keep_alive_tmo = kato
    if queue_size is not None and not QUEUE_SIZE_MIN <= queue_size <= QUEUE_SIZE_MAX:
        raise ValueError(f"queue_size must be {QUEUE_SIZE_MIN}..{QUEUE_SIZE_MAX} for the kernel")
    if nr_io_queues is not None and nr_io_queues < 0:
        raise ValueError("nr_io_queues must be ≥ 0")
    if keep_alive_tmo is not None and float(keep_alive_tmo) < 0:
        raise ValueError("kato/keep_alive_tmo must be ≥ 0 (0 disables keep-alive)")
    if reconnect_delay is not None and float(reconnect_delay) <= 0:
        raise ValueError("reconnect_delay must be > 0 seconds")
    if tos is not None and not -1 <= tos <= 255:
        raise ValueError("tos must be 0..255 (-1: kernel default)")

    # Order: the kernel parses any order; this one is nvme-cli's, which keeps logs comparable.
    opts: list[tuple[str, object]] = [
        ("nqn", _nqn("subnqn", subnqn)),
        ("transport", _check_value("transport", transport)),
        ("traddr", _check_value("traddr", str(traddr))),
        ("trsvcid", _check_value("trsvcid", str(trsvcid))),
    ]
    if host_traddr:
        opts.append(("host_traddr", _check_value("host_traddr", host_traddr)))
    if host_iface:
        opts.append(("host_iface", _check_value("host_iface", host_iface)))
    if hostnqn:
        opts.append(("hostnqn", _nqn("hostnqn", hostnqn)))
    if hostid:
        opts.append(("hostid", str(_uuid.UUID(str(hostid)))))
    if nr_io_queues is not None:
        opts.append(("nr_io_queues", int(nr_io_queues)))
    if nr_write_queues is not None:
        opts.append(("nr_write_queues", int(nr_write_queues)))
    if nr_poll_queues is not None:
        opts.append(("nr_poll_queues", int(nr_poll_queues)))
    if queue_size is not None:
        opts.append(("queue_size", int(queue_size)))
    if keep_alive_tmo is not None:
        opts.append(("keep_alive_tmo", _seconds("keep_alive_tmo", keep_alive_tmo)))
    if reconnect_delay is not None:
        opts.append(("reconnect_delay", _seconds("reconnect_delay", reconnect_delay)))
    if ctrl_loss_tmo is not None:
        opts.append(("ctrl_loss_tmo", _seconds("ctrl_loss_tmo", ctrl_loss_tmo)))
    if fast_io_fail_tmo is not None:
        opts.append(("fast_io_fail_tmo", _seconds("fast_io_fail_tmo", fast_io_fail_tmo)))
    if tos is not None:
        opts.append(("tos", int(tos)))
    for flag, on in (("duplicate_connect", duplicate_connect), ("disable_sqflow", disable_sqflow),
                     ("hdr_digest", hdr_digest), ("data_digest", data_digest),
                     ("discovery", discovery)):
        if on:
            opts.append((flag, None))

    if supported is not None:
        missing = [name for name, _ in opts if name not in supported]
        if missing:
            raise UnsupportedOption(
                f"this kernel's nvme-fabrics does not support option(s): {', '.join(missing)}")
    return ",".join(name if value is None else f"{name}={value}" for name, value in opts)


def parse_options(text: str) -> dict[str, str | None]:
    """Split an option string back into ``{name: value or None}`` (for tests and logs)."""
    out: dict[str, str | None] = {}
    for token in text.strip().split(","):
        if token:
            name, eq, value = token.partition("=")
            out[name] = value if eq else None
    return out


def parse_address(text: str) -> dict[str, str]:
    """A controller's sysfs ``address`` (``traddr=…,trsvcid=…[,host_traddr=…][,src_addr=…]``)."""
    out: dict[str, str] = {}
    for token in text.strip().split(","):
        name, eq, value = token.partition("=")
        if eq:
            out[name.strip()] = value.strip()
    return out
