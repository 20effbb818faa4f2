"""`pynvmetcp target`: run the userspace NVMe/TCP target until SIGINT/SIGTERM.

    pynvmetcp target --config target.toml
    pynvmetcp target --listen 127.0.0.1:4420 --discovery-port 8009 \\
        --subsystem nqn.2024-01.io.example:disk --namespace mem:1G --allow-host nqn.… \\
        --subsystem nqn.2024-01.io.example:other --namespace /var/lib/disk.img

``--namespace`` and ``--allow-host`` belong to the ``--subsystem`` before them; a subsystem
without ``--allow-host`` accepts any host. Flags add to what ``--config`` describes.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from ..target import (ConfigError, ListenConfig, NamespaceConfig, SubsystemConfig, Target,
                      TargetConfig, new_event_loop, parse_address)

PROG = "pynvmetcp target"


class _SubsystemAction(argparse.Action):
    """--subsystem starts a subsystem; --namespace/--allow-host attach to the latest one."""

    def __call__(self, parser, namespace, value, option_string=None):
        subs = getattr(namespace, "subsystems", None) or []
        if self.dest == "subsystems":
            subs.append(SubsystemConfig(value))
        else:
            if not subs:
                parser.error(f"{option_string} must follow a --subsystem")
            if self.dest == "namespace":
                subs[-1].namespaces.append(NamespaceConfig(value))
            else:
                subs[-1].allow_hosts.append(value)
        namespace.subsystems = subs


def register(sub) -> None:
    p = sub.add_parser("target", help="run the userspace NVMe/TCP target",
                       description="Serve NVM subsystems over NVMe/TCP until SIGINT/SIGTERM.")
    add_arguments(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="TOML configuration file")
    p.add_argument("-l", "--listen", action="append", default=[], metavar="ADDR[:PORT]",
                   help="listen address for I/O and discovery (repeatable; default "
                        "127.0.0.1:4420 when no --config)")
    p.add_argument("-d", "--discovery-port", type=int, metavar="PORT",
                   help="also listen for discovery only on this port (same address as the "
                        "first --listen)")
    p.add_argument("-n", "--subsystem", dest="subsystems", action=_SubsystemAction,
                   metavar="NQN", help="serve this subsystem (repeatable)")
    p.add_argument("-N", "--namespace", dest="namespace", action=_SubsystemAction,
                   metavar="PATH|mem:SIZE", help="add a namespace to the last --subsystem")
    p.add_argument("-H", "--allow-host", dest="allow_host", action=_SubsystemAction,
                   metavar="HOSTNQN", help="allow only these hosts for the last --subsystem")
    p.add_argument("-b", "--block-size", type=int, default=512,
                   help="logical block size of --namespace namespaces (default 512)")
    p.add_argument("--max-io-queues", type=int, default=None,
                   help="I/O queues a controller may have (default 64)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log more (-v: every connection, -vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")


def build_config(args: argparse.Namespace) -> TargetConfig:
    cfg = TargetConfig.from_toml(args.config) if args.config else TargetConfig()
    for text in args.listen:
        traddr, trsvcid = parse_address(text)
        cfg.listen.append(ListenConfig(traddr, trsvcid))
    if not cfg.listen:
        cfg.listen.append(ListenConfig("127.0.0.1", 4420))
    if args.discovery_port is not None:
        cfg.listen.append(ListenConfig(cfg.listen[0].traddr, args.discovery_port,
                                       discovery_only=True))
    for sub in getattr(args, "subsystems", None) or []:
        for ns in sub.namespaces:
            ns.block_size = args.block_size
        if args.max_io_queues is not None:
            sub.max_io_queues = args.max_io_queues
        cfg.subsystems.append(sub)
    return cfg


def _describe(target: Target) -> str:
    io = [str(p) for p in target.ports if not p.discovery_only]
    disc = [str(p) for p in target.ports if p.discovery_only]
    subs = ", ".join(f"{s.nqn} ({len(s.namespaces)} ns)"
                     for s in target.registry.subsystems.values()) or "no subsystems"
    line = f"{PROG}: serving {subs} on {', '.join(io) or '-'}"
    if disc:
        line += f"; discovery on {', '.join(disc)}"
    return line


async def _serve(target: Target) -> None:
    loop = asyncio.get_running_loop()
    await target.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: loop.create_task(target.stop()))
    print(_describe(target), flush=True)
    await target.serve_forever()
    logging.getLogger(__name__).info("stopped")


def run(args: argparse.Namespace) -> int:
    levels = (logging.INFO, logging.INFO, logging.DEBUG)
    level = logging.WARNING if args.quiet else levels[min(args.verbose, 2)]
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    if args.verbose < 1 and not args.quiet:
        logging.getLogger("pynvmetcp.target.connect").setLevel(logging.INFO)
    try:
        target = Target(build_config(args))
    except (ConfigError, ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(_serve(target))
    except OSError as exc:  # e.g. the address is in use
        print(f"{PROG}: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run as ``python -m pynvmetcp.cli.target`` (the same as ``pynvmetcp target``)."""
    p = argparse.ArgumentParser(prog=PROG, description="Serve NVM subsystems over NVMe/TCP.")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
