"""Errors of the kernel fallback, one type per thing the caller can act on.

The kernel reports a failed connect only as an errno from write(2) on /dev/nvme-fabrics; the
reason in words goes to the kernel log. So each error carries the errno, the kernel's meaning of
it for this call (from reading nvme-fabrics/nvme-tcp, confirmed in the test VM), the options that
were sent, and the kernel log lines the attempt produced (when /dev/kmsg is readable).
"""
from __future__ import annotations

import errno as _errno

from ..errors import NvmeTcpError


class KernelError(NvmeTcpError):
    """Base of the kernel fallback's errors."""

    errno: int | None = None


class KernelUnavailable(KernelError):
    """Something the kernel path needs is missing (module, device node, compiled helper, root)."""


class ConnectError(KernelError):
    """write(2) of the connect options failed; ``errno`` says why, ``kernel_log`` in words."""

    meaning = "the kernel refused the connect"

    def __init__(self, err: int, options: str, kernel_log: list[str] | None = None,
                 target: str = "") -> None:
        self.errno = err
        self.options = options
        self.kernel_log = list(kernel_log or [])
        name = _errno.errorcode.get(err, str(err))
        msg = f"kernel connect{' to ' + target if target else ''} failed: {self.meaning} ({name})"
        if self.kernel_log:
            msg += ": " + "; ".join(_host_lines(self.kernel_log)[-3:])
        super().__init__(msg)


def _host_lines(lines: list[str]) -> list[str]:
    """The kernel host's own lines ("nvme nvme3: …") say what failed; the rest is context."""
    host = [line for line in lines if line.startswith(("nvme ", "nvme_fabrics", "nvme_tcp"))]
    return host or lines


class InvalidOptions(ConnectError):
    meaning = ("invalid options (unknown option, bad value, or — on kernels that enforce the "
               "pairing — a host NQN already paired with another host ID)")


class ConnectionRefused(ConnectError):
    meaning = "nothing listens on that address and port"


class ConnectTimeout(ConnectError):
    meaning = "no answer in time (TCP connect or ICResp)"


class ConnectRejected(ConnectError):
    meaning = ("the target refused the Fabrics Connect (unknown subsystem NQN, host not allowed, "
               "or invalid parameters)")


class Unreachable(ConnectError):
    meaning = "no route to the target, or host_traddr/host_iface is not usable here"


class ConnectionReset(ConnectError):
    meaning = "the target closed the connection during setup (e.g. ICReq/digest refused)"


class AuthenticationRejected(ConnectError):
    meaning = "in-band authentication was rejected"


_BY_ERRNO = {
    _errno.EINVAL: InvalidOptions,
    _errno.ECONNREFUSED: ConnectionRefused,
    _errno.ETIMEDOUT: ConnectTimeout,
    _errno.EIO: ConnectRejected,
    _errno.ENETUNREACH: Unreachable,
    _errno.EHOSTUNREACH: Unreachable,
    _errno.EADDRNOTAVAIL: Unreachable,
    _errno.ENODEV: Unreachable,
    _errno.ECONNRESET: ConnectionReset,
    _errno.EPIPE: ConnectionReset,
    _errno.EKEYREJECTED: AuthenticationRejected,
}


def connect_error(err: int, options: str, kernel_log: list[str] | None = None,
                  target: str = "") -> ConnectError:
    """The typed error for a connect that failed with ``err``."""
    return _BY_ERRNO.get(err, ConnectError)(err, options, kernel_log, target)


class PassthruError(KernelError):
    """A passthrough ioctl failed before reaching the controller (negative return: -errno)."""

    def __init__(self, err: int, what: str) -> None:
        import os

        self.errno = err
        super().__init__(f"{what}: {os.strerror(err)} ({_errno.errorcode.get(err, err)})")
