"""The `pynvmetcp` command, shaped like nvme-cli: one module per subcommand.

Every error a user can cause or meet (bad input, an NVMe status, a lost connection, a missing
kernel feature) becomes one readable line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ..errors import NvmeTcpError

COMMANDS = ["discover", "connect", "disconnect", "list", "identify", "io", "getlog", "target",
            "decode"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is one ``-h`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked for
    (importlib.metadata is not loaded by every command's start-up)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import version
        print(f"pynvmetcp {version('pynvmetcp')}")
        parser.exit(0)


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = OneLineParser(prog="pynvmetcp", description="NVMe over TCP in Python")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    owners: dict[str, object] = {}
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError:
            continue  # an optional command whose module is absent
        before = set(sub.choices)
        module.register(sub)
        for cmd in set(sub.choices) - before:
            owners[cmd] = module
    return parser, owners


def main(argv: list[str] | None = None) -> int:
    parser, owners = build_parser()
    args = parser.parse_args(argv)
    # The command's error line is the report. Without a handler of its own, a library warning
    # about the same failure (a lost admin queue, say) would reach stderr through logging's
    # last-resort handler as a second line; commands that log (target) configure logging.
    logging.getLogger("pynvmetcp").addHandler(logging.NullHandler())
    try:
        return owners[args.command].run(args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pynvmetcp id-ctrl … | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, FileNotFoundError) as exc:
        print(f"pynvmetcp: error: {exc}", file=sys.stderr)
        return 2
    except (NvmeTcpError, OSError, RuntimeError) as exc:
        print(f"pynvmetcp: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
