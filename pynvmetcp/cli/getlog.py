"""`pynvmetcp get-log`: any log page; error, SMART, ANA and discovery logs are decoded."""
from __future__ import annotations

import argparse
import sys

from ..spec import logpages as L
from ..spec.opcodes import AdminOpcode, LogPageId, NvmOpcode
from ._host import (U32, U64, add_device_args, add_output_args, container_dict, is_json, number,
                    open_controller, print_json)

_EFFECT_NAMES = ((L.CSE_LBCC, "LBCC"), (L.CSE_NCC, "NCC"), (L.CSE_NIC, "NIC"),
                 (L.CSE_CCC, "CCC"))


def _effects(raw: bytes) -> dict:
    """The supported opcodes by name, each with the effects it declares (nvme-cli's columns)."""
    page = L.CommandEffectsLog.parse(raw)

    def name(names, op: int) -> str:
        try:
            return names(op).name
        except ValueError:  # an opcode the specification module does not name
            return f"{op:#04x}"

    def side(values, names) -> dict:
        return {name(names, op): " ".join(n for bit, n in _EFFECT_NAMES if v & bit) or "-"
                for op, v in enumerate(values) if v & L.CSE_CSUPP}
    return {"admin": side(page.acs, AdminOpcode), "io": side(page.iocs, NvmOpcode)}


DECODERS = {
    LogPageId.CMD_EFFECTS: _effects,
    LogPageId.ERROR: lambda raw: [container_dict(L.ErrorLogEntry.parse(raw[i:i + 64]))
                                  for i in range(0, len(raw) - 63, 64)],
    LogPageId.SMART: lambda raw: container_dict(L.SmartLog.parse(raw)),
    LogPageId.ANA: lambda raw: container_dict(L.AnaLogPage.parse(raw)),
    LogPageId.DISCOVERY: lambda raw: container_dict(L.DiscoveryLogPage.parse(raw)),
}
DEFAULT_LEN = {LogPageId.ERROR: 64, LogPageId.SMART: 512, LogPageId.ANA: 4096,
               LogPageId.DISCOVERY: 4096, LogPageId.CMD_EFFECTS: L.CMD_EFFECTS_LEN}


def register(sub) -> None:
    p = sub.add_parser("get-log", help="Get Log Page")
    add_device_args(p)
    p.add_argument("-i", "--log-id", type=number(0, 255, "log page ID"), required=True)
    p.add_argument("-l", "--log-len", type=number(4, 4 * (U32 + 1), "log length"),
                   default=None, help="bytes (multiple of 4)")
    p.add_argument("-n", "--namespace-id", type=number(0, U32, "namespace ID"),
                   default=U32)
    p.add_argument("-L", "-O", "--lpo", type=number(0, U64 - 3, "log page offset"), default=0,
                   help="log page offset in bytes (multiple of 4)")
    p.add_argument("-s", "--lsp", type=number(0, 127, "log specific field"), default=0,
                   help="log specific field")
    p.add_argument("-b", "--raw-binary", action="store_true", help="write the raw page")
    add_output_args(p)


def run(args: argparse.Namespace) -> int:
    length = args.log_len or DEFAULT_LEN.get(args.log_id, 512)
    for what, value in (("log length", length), ("log page offset", args.lpo)):
        if value % 4:
            raise ValueError(f"{what} {value} is not a multiple of 4 (the page is read in "
                             f"dwords)")
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
                if args.log_id == LogPageId.SMART:
                    decoded = _smart_units(decoded)
                _print_tree(decoded)
            return 0
    if is_json(args):
        print_json({"log_id": args.log_id, "data": raw.hex()})
    else:
        for off in range(0, len(raw), 16):
            chunk = raw[off:off + 16]
            print(f"{off:04x}: {chunk.hex(' ')}")
    return 0


def _smart_units(page: dict) -> dict:
    """Temperatures are Kelvin on the wire; people read Celsius (as nvme-cli shows both)."""
    out = dict(page)
    kelvin = page.get("temperature")
    if kelvin:
        out["temperature"] = f"{kelvin - 273} °C ({kelvin} K)"
    sensors = page.get("temp_sensor") or []
    if any(sensors):
        out["temp_sensor"] = [f"{k - 273} °C ({k} K)" if k else "-" for k in sensors]
    return out


def _scalar(v) -> str:
    if isinstance(v, (bytes, bytearray)):
        return f"({len(v)} zero bytes)" if not any(v) else bytes(v).hex()
    return str(v)


def _print_tree(value, indent: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("rsvd"):
                continue
            if isinstance(v, (dict, list)):
                print(f"{indent}{k}:")
                _print_tree(v, indent + "  ")
            else:
                print(f"{indent}{k:<28}: {_scalar(v)}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            print(f"{indent}[{i}]")
            _print_tree(v, indent + "  ")
    else:
        print(f"{indent}{value}")
