"""The three things an attach or detach needs root for, done through ``root_helper`` when the
caller is not root.

nova-compute runs as its own user and reaches root through a command prefix (rootwrap, or what
starts a privsep daemon): that is the ``root_helper`` os-brick connectors are given. Here root is
needed to write and remove a volume's entry file (the discovery-client's directory is root's) and
to flush a block device (BLKFLSBUF needs CAP_SYS_ADMIN). Run as root, the connector does them in
its own process. Otherwise:

* flush: ``ROOT_HELPER blockdev --flushbufs DEVICE``, the command os-brick runs, which nova's
  rootwrap filters already allow;
* entry files: ``ROOT_HELPER python3 -m lightos_driver.privileged write-entry|remove-entry
  VOLUME-UUID`` (the entries on standard input), which needs one filter line (driver/README.md).

Everything the privileged side is given is checked there, not trusted from the caller: the
volume ID must be a UUID, the file is always ``<uuid>.conf`` directly in the discovery
directory, and the text must parse as entry lines (re-rendered, never copied through).
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from . import devices
from .entries import Entry, parse_text, render, write_entry_file
from .errors import EntryFileError, FlushError, LightOSError
from .paths import Paths

#: Set only by tests (the helper then works below a temp root); never in a filter line.
ROOT_OPTION = "--paths-root"


class RootHelper:
    """Runs the privileged operations in this process (root) or through ``root_helper``."""

    def __init__(self, root_helper: str | None, paths: Paths) -> None:
        self.prefix = shlex.split(root_helper) if root_helper else []
        self.paths = paths

    @property
    def in_process(self) -> bool:
        """Root, or no helper to ask: do it here (failing as this user would, if not root)."""
        return os.geteuid() == 0 or not self.prefix

    def write_entry(self, uuid: str, entries: list[Entry]) -> None:
        if self.in_process:
            _write(self.paths, uuid, entries)
            return
        self._helper(["write-entry", uuid], render(entries))

    def remove_entry(self, uuid: str) -> None:
        if self.in_process:
            _remove(self.paths, uuid)
            return
        self._helper(["remove-entry", uuid], "")

    def flush(self, device: str) -> None:
        if self.in_process:
            devices.flush_device(device)
            return
        # no time limit: writing back a device's dirty buffers takes what it takes, as in-process
        self._run(self.prefix + ["blockdev", "--flushbufs", device], "", FlushError, None)

    def _helper(self, args: list[str], stdin: str) -> None:
        """This module run as root by the helper, for the entry file."""
        cmd = self.prefix + [sys.executable, "-m", __name__, *args]
        if self.paths.root is not None:
            cmd += [ROOT_OPTION, str(self.paths.root)]
        self._run(cmd, stdin, EntryFileError, 60.0)

    def _run(self, cmd: list[str], stdin: str, error: type[LightOSError],
             timeout: float | None) -> None:
        shown = shlex.join(cmd[len(self.prefix):])  # the helper's prefix is the operator's
        try:
            done = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                                  timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise error(f"{shown} (through the root helper): {exc}") from exc
        if done.returncode:
            why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise error(f"{shown} (through the root helper): {why[0]}")


def entry_path(paths: Paths, uuid: str) -> Path:
    """A volume's entry file: ``<uuid>.conf`` directly in the discovery directory."""
    return paths.discovery_dir / f"{devices.check_volume_id(uuid)}.conf"


def _write(paths: Paths, uuid: str, entries: list[Entry]) -> None:
    write_entry_file(paths.discovery_dir, entry_path(paths, uuid).name, entries,
                     comment=f"lightos_driver connector entry file for LightOS volume: {uuid}")


def _remove(paths: Paths, uuid: str) -> None:
    path = entry_path(paths, uuid)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise EntryFileError(f"cannot delete {path}: {exc.strerror}") from exc


def main(argv: list[str] | None = None) -> int:
    """The privileged side: ``write-entry UUID`` (entries on stdin) or ``remove-entry UUID``."""
    ap = argparse.ArgumentParser(prog="python -m lightos_driver.privileged")
    ap.add_argument("operation", choices=["write-entry", "remove-entry"])
    ap.add_argument("uuid")
    ap.add_argument(ROOT_OPTION, dest="root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    paths = Paths.under(args.root) if args.root else Paths()
    try:
        if args.operation == "remove-entry":
            _remove(paths, args.uuid)
            return 0
        entries = parse_text(sys.stdin.read(), "standard input")
        if not entries:
            raise EntryFileError("no entries on standard input")
        _write(paths, args.uuid, entries)
    except (LightOSError, ValueError) as exc:
        print(f"lightos_driver.privileged: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
