"""The two commands: ``lightos-driver`` (operator and test tool) and ``lightos-discovery-client``.

    lightos-discovery-client serve [--metrics-port 6060] [--libvirt-uri qemu:///system]
    lightos-driver reconnect [--libvirt-uri URI] [--json]
    lightos-driver connector-properties
    lightos-driver attach --uuid U --subsysnqn NQN --node IP [--node IP ...]
    lightos-driver detach --uuid U [--force] | extend --uuid U
    lightos-driver fake-cluster --nodes 3 ...

Every filesystem location can be moved (``--root`` prefixes them all), so both run on temp dirs.
Errors end in one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any, Callable

from .errors import LightOSError
from .paths import Paths

log = logging.getLogger("lightos_driver")


class _Parser(argparse.ArgumentParser):
    """A usage error in one line too: argparse's own is the whole usage first (a dozen lines
    for ``attach``), which pushes the one line that says what is wrong out of an operator's
    journal excerpt. The usage stays one ``-h`` away. Subcommands' parsers are of this class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _path_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("locations")
    g.add_argument("--root", help="prefix every location below (a stand-in for /)")
    for name, help_ in (("etc-nvme", "/etc/nvme"), ("discovery-dir",
                        "/etc/discovery-client/discovery.d"),
                        ("internal-dir", "/etc/discovery-client/internal"),
                        ("state-dir", "/var/lib/lightos-driver"), ("sys", "/sys"),
                        ("dev", "/dev")):
        g.add_argument(f"--{name}", help=f"default {help_}")
    p.add_argument("-v", "--verbose", action="count", default=0)


def _paths(args: argparse.Namespace) -> Paths:
    paths = Paths.under(args.root) if args.root else Paths()
    over = {k: getattr(args, k) for k in ("etc_nvme", "discovery_dir", "internal_dir",
                                          "state_dir", "sys", "dev") if getattr(args, k, None)}
    return paths.with_(**over) if over else paths


def _logging(args: argparse.Namespace) -> None:
    level = logging.WARNING - 10 * min(2, args.verbose)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _print(obj: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else text(obj))


# ---- lightos-driver ----
def _props(args: argparse.Namespace) -> dict:
    nodes = {}
    for n in args.node or []:
        ip, _, port = n.rpartition(":") if n.count(":") == 1 else (n, "", "")
        nodes[ip] = {"target_portal": ip, "target_port": int(port or 8009),
                     "transport_type": "tcp"}
    return {"uuid": args.uuid, "subsysnqn": args.subsysnqn, "lightos_nodes": nodes}


def cmd_reconnect(args: argparse.Namespace) -> int:
    from .connector import LightOSConnector
    from .reconnect import FAILED, reconnect

    paths = _paths(args)
    connector = LightOSConnector(None, device_scan_attempts=args.attempts, paths=paths,
                                 device_wait_timeout=args.timeout)
    outcomes = reconnect(paths, libvirt_uri=args.libvirt_uri, connector=connector,
                         update_domains=not args.no_update_domains, prune=args.prune)
    _print([o.to_json() for o in outcomes], args.json,
           lambda objs: "\n".join(o.line() for o in outcomes) or "nothing recorded: nothing to do")
    return 1 if any(o.action == FAILED for o in outcomes) else 0


def cmd_properties(args: argparse.Namespace) -> int:
    from .connector import LightOSConnector

    props = LightOSConnector.get_connector_properties(None, paths=_paths(args),
                                                      dsc_port=args.dsc_port)
    print(json.dumps(props, indent=2))
    return 0 if props.get("nqn") else 1


def cmd_attach(args: argparse.Namespace) -> int:
    from .libvirt_volume import LibvirtLightOSVolumeDriver
    from .connector import LightOSConnector

    paths = _paths(args)
    connector = LightOSConnector(None, device_scan_attempts=args.attempts, paths=paths,
                                 device_wait_timeout=args.timeout)
    drv = LibvirtLightOSVolumeDriver(args.libvirt_uri, connector=connector)
    info = {"driver_volume_type": "lightos", "serial": args.serial or args.uuid,
            "data": _props(args)}
    instance = {"uuid": args.instance_uuid or "", "name": args.instance or ""}
    if args.instance or args.instance_uuid:
        how = drv.attach(info, {"type": "disk", "dev": args.target_dev, "bus": "virtio"},
                         instance)
        print(json.dumps({"path": info["data"]["device_path"], "attached": how}))
    else:
        drv.connect_volume(info, None)
        print(json.dumps({"type": "block", "path": info["data"]["device_path"]}))
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    from .libvirt_volume import LibvirtLightOSVolumeDriver
    from .connector import LightOSConnector

    paths = _paths(args)
    drv = LibvirtLightOSVolumeDriver(args.libvirt_uri,
                                     connector=LightOSConnector(None, paths=paths))
    info = {"serial": args.uuid, "data": {"uuid": args.uuid}}
    instance = {"uuid": args.instance_uuid or "", "name": args.instance or ""}
    if args.instance or args.instance_uuid:
        drv.detach(info, instance, force=args.force)
    else:
        drv.disconnect_volume(info, None, force=args.force)
    return 0


def cmd_extend(args: argparse.Namespace) -> int:
    from .connector import LightOSConnector

    size = LightOSConnector(None, paths=_paths(args), device_scan_attempts=args.attempts
                            ).extend_volume({"uuid": args.uuid})
    print(size)
    return 0


def cmd_fake_cluster(args: argparse.Namespace) -> int:
    from .fake_cluster import main as fake_main

    return fake_main(args)


def build_driver_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="lightos-driver",
                 description="LightOS volume driver tools")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("reconnect", help="restore every LightOS volume of every instance")
    _path_args(p)
    p.add_argument("--libvirt-uri", default=None)
    p.add_argument("--attempts", type=int, default=8, help="device scan attempts per volume")
    p.add_argument("--timeout", type=float, default=60.0, help="max wait per volume, seconds")
    p.add_argument("--no-update-domains", action="store_true",
                   help="do not rewrite stopped domains whose device path changed")
    p.add_argument("--prune", action="store_true",
                   help="forget records of instances libvirt no longer has")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_reconnect)

    p = sub.add_parser("connector-properties", help="what cinder needs from this host")
    _path_args(p)
    p.add_argument("--dsc-port", type=int, default=6060)
    p.set_defaults(fn=cmd_properties)

    for name, fn in (("attach", cmd_attach), ("detach", cmd_detach), ("extend", cmd_extend)):
        p = sub.add_parser(name, help=f"{name} one volume (as nova would)")
        _path_args(p)
        p.add_argument("--uuid", required=True)
        p.set_defaults(fn=fn)
        if name == "extend":
            p.add_argument("--attempts", type=int, default=5)
            continue
        p.add_argument("--instance", help="libvirt domain name")
        p.add_argument("--instance-uuid")
        p.add_argument("--libvirt-uri", default=None)
        if name == "attach":
            p.add_argument("--subsysnqn", required=True)
            p.add_argument("--node", action="append", required=True, help="IP[:port], repeat")
            p.add_argument("--serial")
            p.add_argument("--target-dev", default="vdb")
            p.add_argument("--attempts", type=int, default=8)
            p.add_argument("--timeout", type=float, default=60.0)
        else:
            p.add_argument("--force", action="store_true")

    p = sub.add_parser("fake-cluster", help="a LightOS cluster stand-in on pynvmetcp targets")
    from .fake_cluster_args import add_arguments
    add_arguments(p)
    p.set_defaults(fn=cmd_fake_cluster)
    return ap


def _run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    args = parser.parse_args(argv)
    _logging(args) if hasattr(args, "verbose") else logging.basicConfig(level=logging.WARNING)
    try:
        return int(args.fn(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (LightOSError, OSError, ValueError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - pynvmetcp errors and the like: one line
        print(f"{parser.prog}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    return _run(build_driver_parser(), argv)


# ---- lightos-discovery-client ----
def cmd_serve(args: argparse.Namespace) -> int:
    from .discovery import DiscoveryService, ServiceConfig

    paths = _paths(args)
    cfg = ServiceConfig(paths=paths, metrics_host=args.metrics_host,
                        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
                        kato=args.kato, reconnect_interval=args.reconnect_interval,
                        ctrl_loss_tmo=args.ctrl_loss_tmo, use_inotify=not args.poll)

    def startup_reconnect(svc: DiscoveryService) -> None:
        from .connector import LightOSConnector
        from .reconnect import reconnect

        if not paths.attachments_file.exists():
            return
        try:
            outcomes = reconnect(paths, libvirt_uri=args.libvirt_uri,
                                 connector=LightOSConnector(None, device_scan_attempts=8,
                                                            paths=paths))
        except Exception as exc:  # noqa: BLE001 - the service keeps serving
            log.error("startup reconnect failed: %s", exc)
            return
        for o in outcomes:
            log.warning("startup reconnect: %s", o.line())

    svc = DiscoveryService(cfg, on_started=None if args.no_reconnect else startup_reconnect)
    signal.signal(signal.SIGTERM, lambda *a: svc.stop())
    signal.signal(signal.SIGINT, lambda *a: svc.stop())
    svc.start()
    port = svc.metrics_server.port if svc.metrics_server else None
    print(json.dumps({"serving": str(paths.discovery_dir), "metrics_port": port,
                      "watch": svc.watcher.mode}), flush=True)
    svc.serve_forever()
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .entries import read_dir, read_internal

    paths = _paths(args)
    files, errors = read_dir(paths.discovery_dir)
    state = read_internal(paths.internal_json)
    out = {"files": {n: [e.line() for e in es] for n, es in files.items()}, "rejected": errors,
           "internal": [e.to_json() for e in state.entries] if state else []}
    print(json.dumps(out, indent=2))
    return 0


def build_dc_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="lightos-discovery-client",
                 description="discovery-client service for LightOS clusters")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="run the service")
    _path_args(p)
    p.add_argument("--metrics-host", default="::")
    p.add_argument("--metrics-port", type=int, default=6060, help="-1: no metrics endpoint")
    p.add_argument("--kato", type=float, default=30.0)
    p.add_argument("--reconnect-interval", type=float, default=5.0)
    p.add_argument("--ctrl-loss-tmo", type=int, default=None)
    p.add_argument("--poll", action="store_true", help="poll discovery.d instead of inotify")
    p.add_argument("--libvirt-uri", default=None,
                   help="for the startup reconnect of recorded attachments")
    p.add_argument("--no-reconnect", action="store_true", help="skip the startup reconnect")
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("list", help="entry files, rejected files and internal state")
    _path_args(p)
    p.set_defaults(fn=cmd_list)
    return ap


def discovery_client_main(argv: list[str] | None = None) -> int:
    return _run(build_dc_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
