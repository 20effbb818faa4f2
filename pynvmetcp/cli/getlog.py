"""`pynvmetcp get-log`: any log page; error, SMART, ANA and discovery logs are decoded."""
from __future__ import annotations

import argparse
import sys

from ..spec import logpages as L
from ..spec.opcodes import LogPageId
from ._host import add_device_args, add_output_args, container_dict, is_json, open_controller, print_json

DECODERS = {
    LogPageId.ERROR: lambda raw: [container_dict(L.ErrorLogEntry.parse(raw[i:i + 64]))
                                  for i in range(0, len(raw) - 63, 64)],
    LogPageId.SMART: lambda raw: container_dict(L.SmartLog.parse(raw)),
    LogPageId.ANA: lambda raw: container_dict(L.AnaLogPage.parse(raw)),
    LogPageId.DISCOVERY: lambda raw: container_dict(L.DiscoveryLogPage.parse(raw)),
}
DEFAULT_LEN = {LogPageId.ERROR: 64, LogPageId.SMART: 512, LogPageId.ANA: 4096,
               LogPageId.DISCOVERY: 4096}


def register(sub) -> None:
    p = sub.add_parser("get-log", help="Get Log Page")
    add_device_args(p)
    p.add_argument("-i", "--log-id", type=lambda s: int(s, 0), required=True)
    p.add_argument("-l", "--log-len", type=int, default=None, help="bytes (multiple of 4)")
    p.add_argument("-n", "--namespace-id", type=lambda s: int(s, 0), default=0xFFFFFFFF)
    p.add_argument("-O", "--lpo", type=int, default=0, help="log page offset")
    p.add_argument("-s", "--lsp", type=int, default=0, help="log specific field")
    p.add_argument("-b", "--raw-binary", action="store_true", help="write the raw page")
    add_output_args(p)


def run(args: argparse.Namespace) -> int:
    length = args.log_len or DEFAULT_LEN.get(args.log_id, 512)
    nsid = 0 if args.log_id == LogPageId.DISCOVERY and args.namespace_id == 0xFFFFFFFF \
        else args.namespace_id
    with open_controller(args) as ctrl:
        raw = ctrl.get_log_page(args.log_id, length, nsid=nsid, offset=args.lpo, lsp=args.lsp)
    if args.raw_binary:
        sys.stdout.buffer.write(raw)
        return 0
    decoder = DECODERS.get(args.log_id)
    if decoder is not None and args.lpo == 0:
        try:
            decoded = decoder(raw)
        except Exception as exc:  # a short or partial page cannot be decoded: show it raw
            decoded = None
            print(f"(not decoded: {exc})", file=sys.stderr)
        if decoded is not None:
            if is_json(args):
                print_json(decoded)
            else:
                _print_tree(decoded)
            return 0
    if is_json(args):
        print_json({"log_id": args.log_id, "data": raw.hex()})
    else:
        for off in range(0, len(raw), 16):
            chunk = raw[off:off + 16]
            print(f"{off:04x}: {chunk.hex(' ')}")
    return 0


def _print_tree(value, indent: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("rsvd"):
                continue
            if isinstance(v, (dict, list)):
                print(f"{indent}{k}:")
                _print_tree(v, indent + "  ")
            else:
                print(f"{indent}{k:<28}: {v}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            print(f"{indent}[{i}]")
            _print_tree(v, indent + "  ")
    else:
        print(f"{indent}{value}")
