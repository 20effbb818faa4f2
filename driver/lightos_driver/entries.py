"""The discovery-client's entry files and internal state, in Lightbits' formats.

Entry files (``/etc/discovery-client/discovery.d/*``) hold one entry per line in nvme-cli's
discovery.conf syntax: ``-t tcp -a <traddr> -s <trsvcid> -q <hostnqn> -n <subsysnqn>`` with optional
``-I <hostid>``, ``-p`` and ``-l <ctrl-loss-tmo>``; long forms (``--traddr``) and ``--flag=value``
work too; ``#`` starts a comment. The rules follow upstream's parser so the same files mean the
same thing to both services: an unknown flag, a transport other than tcp, a bad port or address
reject the whole file (a typo must not half-apply); an entry missing a mandatory field is skipped
with a warning; duplicates are dropped.

``internal.json`` is upstream's state file: ``{"entries": [...], "creation_time": ...}`` with the
Go field names, so either service can read the other's. We add one field, ``File`` (the entry file
an entry came from), which Go ignores; it is what lets us act on a removed file.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from .atomic import write_atomic, write_json_atomic
from .errors import EntryFileError
from .paths import ENTRY_TMP_PREFIX

log = logging.getLogger(__name__)

SOURCE_USER = "user"
SOURCE_REFERRAL = "referral"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class EntryFormatError(EntryFileError):
    """A file that must be rejected whole (upstream's ParserError)."""


@dataclass(frozen=True)
class Entry:
    """One discovery endpoint of one cluster, for one host NQN."""

    traddr: str
    trsvcid: int
    subsysnqn: str
    hostnqn: str
    transport: str = "tcp"
    hostid: str = ""
    persistent: bool = False
    ctrl_loss_tmo: int | None = None
    source: str = SOURCE_USER
    file: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, str, int, str, str]:
        """What makes two entries the same endpoint (upstream's Entry.compare, less -p)."""
        return (self.transport, self.traddr, self.trsvcid, self.subsysnqn, self.hostnqn)

    @property
    def cluster(self) -> tuple[str, str]:
        """(subsysnqn, hostnqn): one cluster as seen by one host identity."""
        return (self.subsysnqn, self.hostnqn)

    def line(self) -> str:
        parts = [f"-t {self.transport}", f"-a {self.traddr}", f"-s {self.trsvcid}",
                 f"-q {self.hostnqn}"]
        if self.hostid:
            parts.append(f"-I {self.hostid}")
        parts.append(f"-n {self.subsysnqn}")
        if self.persistent:
            parts.append("-p")
        if self.ctrl_loss_tmo is not None:
            parts.append(f"-l {self.ctrl_loss_tmo}")
        return " ".join(parts)

    def to_json(self) -> dict:
        return {"Transport": self.transport, "Trsvcid": self.trsvcid, "Traddr": self.traddr,
                "Hostnqn": self.hostnqn, "Hostid": self.hostid, "Subsysnqn": self.subsysnqn,
                "Persistent": self.persistent, "Hostaddr": "", "EntrySource": self.source,
                "CtrlLossTMO": self.ctrl_loss_tmo, "File": self.file}

    @classmethod
    def from_json(cls, d: dict) -> "Entry":
        return cls(traddr=str(d["Traddr"]), trsvcid=int(d["Trsvcid"]),
                   subsysnqn=str(d["Subsysnqn"]), hostnqn=str(d["Hostnqn"]),
                   transport=str(d.get("Transport") or "tcp"), hostid=str(d.get("Hostid") or ""),
                   persistent=bool(d.get("Persistent")), ctrl_loss_tmo=d.get("CtrlLossTMO"),
                   source=str(d.get("EntrySource") or SOURCE_USER), file=str(d.get("File") or ""))

    def missing(self) -> str | None:
        """The first mandatory field that is empty (upstream's verify)."""
        for name in ("subsysnqn", "traddr", "trsvcid", "transport", "hostnqn"):
            if not getattr(self, name):
                return name
        if self.ctrl_loss_tmo is not None and self.ctrl_loss_tmo < -1:
            return "ctrl_loss_tmo (must be ≥ -1)"
        return None


_FLAGS = {"-t": "transport", "--transport": "transport", "-a": "traddr", "--traddr": "traddr",
          "-s": "trsvcid", "--trsvcid": "trsvcid", "-q": "hostnqn", "--hostnqn": "hostnqn",
          "-I": "hostid", "--hostid": "hostid", "-n": "subsysnqn", "--subsysnqn": "subsysnqn",
          "-l": "ctrl_loss_tmo", "--ctrl-loss-tmo": "ctrl_loss_tmo"}
_BOOL_FLAGS = {"-p": "persistent", "--persistent": "persistent"}


def valid_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(value))


def _int(value: str, what: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise EntryFormatError(f"bad {what}: {value!r} is not a valid int") from None


def parse_line(line: str, filename: str = "") -> Entry | None:
    """One line → an Entry, None for a blank/comment line or an incomplete entry (warned)."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    tokens = re.split(r"[\s=]+", text)
    fields: dict[str, object] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in _BOOL_FLAGS:
            fields[_BOOL_FLAGS[tok]] = True
            i += 1
            continue
        if tok not in _FLAGS:
            raise EntryFormatError(f"unknown flag: {tok} is not a valid flag")
        if i + 1 >= len(tokens):
            raise EntryFormatError(f"flag {tok} has no value")
        name, value = _FLAGS[tok], tokens[i + 1]
        if name == "transport" and value != "tcp":
            raise EntryFormatError(f"bad transport: {value} is not a valid transport")
        if name == "traddr" and not valid_address(value):
            raise EntryFormatError(f"bad address: {value} is not a valid hostname or IP address")
        if name == "trsvcid":
            port = _int(value, "port")
            if not 0 < port < 65536:
                raise EntryFormatError(f"bad port: {value}")
            fields[name] = port
        elif name == "ctrl_loss_tmo":
            fields[name] = _int(value, "controller loss timeout value")
        else:
            fields[name] = value
        i += 2
    entry = Entry(traddr=str(fields.get("traddr", "")), trsvcid=int(fields.get("trsvcid", 0)),
                  subsysnqn=str(fields.get("subsysnqn", "")),
                  hostnqn=str(fields.get("hostnqn", "")),
                  transport=str(fields.get("transport", "")), hostid=str(fields.get("hostid", "")),
                  persistent=bool(fields.get("persistent", False)),
                  ctrl_loss_tmo=fields.get("ctrl_loss_tmo"), file=filename)  # type: ignore[arg-type]
    missing = entry.missing()
    if missing:
        log.warning("%s: entry %r not valid: %s is mandatory", filename or "entry", text, missing)
        return None
    return entry


def parse_text(text: str, filename: str = "") -> list[Entry]:
    """Every valid entry of a file, duplicates dropped (first one kept), order preserved."""
    out: dict[tuple, Entry] = {}
    for n, line in enumerate(text.splitlines(), 1):
        try:
            entry = parse_line(line, filename)
        except EntryFormatError as exc:
            raise EntryFormatError(f"{filename or 'entry file'} line {n}: {exc}") from None
        if entry is not None:
            out.setdefault(entry.key, entry)
    return list(out.values())


def parse_file(path: str | os.PathLike) -> list[Entry]:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise EntryFileError(f"{path}: cannot read: {exc}") from exc
    return parse_text(text, path.name)


def is_entry_file_name(name: str) -> bool:
    """Files the service reads: not writers' temp files, not hidden files."""
    return not name.startswith(ENTRY_TMP_PREFIX) and not name.startswith(".")


def read_dir(directory: str | os.PathLike) -> tuple[dict[str, list[Entry]], dict[str, str]]:
    """All entry files of a directory: ({file name: entries}, {file name: why rejected})."""
    directory = Path(directory)
    files: dict[str, list[Entry]] = {}
    errors: dict[str, str] = {}
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return files, errors
    for name in names:
        p = directory / name
        if not is_entry_file_name(name) or not p.is_file():
            continue
        try:
            files[name] = parse_file(p)
        except FileNotFoundError:
            continue  # removed while we read: the watcher reports the removal
        except EntryFileError as exc:
            errors[name] = str(exc)
            log.error("rejecting entry file %s: %s", p, exc)
    return files, errors


def render(entries: list[Entry], comment: str = "") -> str:
    head = "".join(f"# {c}\n" for c in comment.splitlines()) if comment else ""
    return head + "".join(e.line() + "\n" for e in entries)


def write_entry_file(directory: str | os.PathLike, name: str, entries: list[Entry],
                     comment: str = "") -> Path:
    """Create or replace an entry file atomically (``tmp.dc.*`` in the same dir, then rename)."""
    if not is_entry_file_name(name) or "/" in name or name in ("", ".", ".."):
        raise EntryFileError(f"not a usable entry file name: {name!r}")
    path = Path(directory) / name
    try:
        write_atomic(path, render(entries, comment), prefix=ENTRY_TMP_PREFIX)
    except OSError as exc:
        raise EntryFileError(f"{path}: cannot write: {exc}") from exc
    return path


# ---- internal.json ----
def _parse_time(text: str) -> datetime:
    """Go writes RFC 3339 with up to 9 fractional digits; Python takes 6."""
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    frac = (m.group(2) or "")[:7]
    tz = m.group(3) or "Z"
    return datetime.fromisoformat(m.group(1) + frac + ("+00:00" if tz == "Z" else tz))


@dataclass
class InternalState:
    entries: list[Entry]
    creation_time: datetime

    def to_json(self) -> dict:
        return {"entries": [e.to_json() for e in self.entries],
                "creation_time": self.creation_time.isoformat()}


def read_internal(path: str | os.PathLike) -> InternalState | None:
    """internal.json, or None when missing, empty or unreadable (then the user dir decides)."""
    try:
        raw = json.loads(Path(path).read_text())
        entries = [Entry.from_json(d) for d in raw.get("entries") or []]
        return InternalState(entries, _parse_time(raw["creation_time"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("ignoring unreadable %s: %s", path, exc)
        return None


def write_internal(path: str | os.PathLike, entries: list[Entry]) -> None:
    state = InternalState(list(entries), datetime.now(timezone.utc))
    write_json_atomic(path, state.to_json(), prefix="tmp_internal.json")


def with_source(entry: Entry, source: str, file: str = "") -> Entry:
    return replace(entry, source=source, file=file)
