"""Arguments of ``lightos-driver fake-cluster`` (kept apart so the CLI loads without the target)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=3, help="storage nodes (targets)")
    p.add_argument("--addresses", nargs="*", default=None,
                   help="one IP per node (default 127.0.0.1 for all, ports differ)")
    p.add_argument("--io-port", type=int, default=4420, help="first node's I/O port")
    p.add_argument("--discovery-port", type=int, default=8009,
                   help="first node's discovery port")
    p.add_argument("--subsysnqn", default=None, help="the cluster's subsystem NQN")
    p.add_argument("--volume", action="append", default=[],
                   help="UUID:SIZE[:HOSTNQN,...] a volume and the hosts allowed to it")
    p.add_argument("-v", "--verbose", action="count", default=0)
