#!/usr/bin/env python3
"""Record the part of a live /sys that pynvmetcp.kernel.sysfs reads, into a directory.

Why: the sysfs model is tested on a tree recorded from a real kernel (tests/kernel/sysfs_tree)
instead of on a layout written from memory. Run it in the kernel VM while controllers are
connected (tests/vm/kernel_fallback_guest.py does, with --record DIR):

    python scripts/record_sysfs.py DEST [--sys /sys]

Only plain attribute files (an allow-list: the ones the model reads, plus a few for people) and
the symlinks that tie controllers, subsystems and block devices together are copied; symlinks keep
their relative targets, so the copy resolves inside DEST exactly as /sys does. Write-only control
files (delete_controller…) become empty files, so tests can check what was written to them.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys

ATTRS = {
    # controller
    "address", "state", "subsysnqn", "hostnqn", "hostid", "transport", "cntlid", "kato",
    "ctrl_loss_tmo", "reconnect_delay", "fast_io_fail_tmo", "model", "serial", "firmware_rev",
    "cntrltype", "dctype", "queue_count", "sqsize", "numa_node", "dev",
    # subsystem
    "iopolicy", "subsystype",
    # namespace (head, path or plain disk)
    "nsid", "uuid", "nguid", "eui", "wwid", "size", "hidden", "ro", "ana_state", "ana_grpid",
}
WRITE_ONLY = {"delete_controller", "rescan_controller", "reset_controller"}
NAMESPACE_DIR = re.compile(r"^nvme\d+(c\d+)?n\d+$")
CONTROLLER_LINK = re.compile(r"^nvme\d+$")


class Recorder:
    def __init__(self, sysroot: str, dest: str) -> None:
        self.sys = os.path.realpath(sysroot)
        self.dest = dest
        self.done: set[str] = set()

    def rel(self, path: str) -> str:
        return os.path.relpath(os.path.realpath(path), self.sys)

    def link(self, rel_link: str) -> str:
        """Copy the symlink at sys/rel_link (relative target kept); returns its target, relative."""
        src = os.path.join(self.sys, rel_link)
        dst = os.path.join(self.dest, rel_link)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.lexists(dst):
            os.symlink(os.readlink(src), dst)
        return self.rel(src)

    def directory(self, rel_dir: str, subdirs: re.Pattern | None = NAMESPACE_DIR) -> None:
        if rel_dir in self.done:
            return
        self.done.add(rel_dir)
        src = os.path.join(self.sys, rel_dir)
        dst = os.path.join(self.dest, rel_dir)
        os.makedirs(dst, exist_ok=True)
        for name in sorted(os.listdir(src)):
            path = os.path.join(src, name)
            if os.path.islink(path):
                if CONTROLLER_LINK.match(name) and "nvme-subsys" in rel_dir:
                    self.link(os.path.join(rel_dir, name))
                continue
            if os.path.isdir(path):
                if subdirs is not None and subdirs.match(name):
                    self.directory(os.path.join(rel_dir, name))
                continue
            if name in WRITE_ONLY:
                open(os.path.join(dst, name), "w").close()
            elif name in ATTRS:
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                with open(os.path.join(dst, name), "wb") as f:
                    f.write(data)

    def record(self) -> None:
        for cls in ("nvme", "nvme-subsystem", "block"):
            d = os.path.join(self.sys, "class", cls)
            if not os.path.isdir(d):
                continue
            for name in sorted(os.listdir(d)):
                if not name.startswith("nvme"):
                    continue
                target = self.link(os.path.join("class", cls, name))
                self.directory(target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest")
    ap.add_argument("--sys", default="/sys")
    ap.add_argument("--clean", action="store_true", help="empty DEST first")
    args = ap.parse_args(argv)
    if args.clean and os.path.isdir(args.dest):
        shutil.rmtree(args.dest)
    Recorder(args.sys, args.dest).record()
    return 0


if __name__ == "__main__":
    sys.exit(main())
