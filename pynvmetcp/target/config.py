"""Target configuration: dataclasses for the Python API, and the TOML file that fills them.

    [target]                       # optional limits
    max_queue_size = 1024
    max_transfer = "1M"
    in_capsule_data = "128K"

    [[listen]]
    address = "127.0.0.1:4420"     # an I/O port (it answers discovery too)
    [listen.ana]                   # ANA group → state through this port (every subsystem
                                   # of this file; at runtime: Target.set_ana_state)
    2 = "inaccessible"

    [[listen]]
    address = "127.0.0.1:8009"
    discovery = true               # discovery only

    [[referral]]
    address = "192.0.2.7:8009"

    [[subsystem]]
    nqn = "nqn.2024-01.io.example:disk"
    allow_hosts = ["nqn.2014-08.org.nvmexpress:uuid:…"]   # omitted: any host
    [[subsystem.namespace]]
    path = "mem:64M"               # or a file / block device path
    ana_group = 1

A mistake is reported as one ``ConfigError`` naming the table and key, never a traceback.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol.controller import DEFAULT_IO_ICD_SIZE
from ..spec.fabrics import NVME_VS_1_3, NVME_VS_1_4
from ..spec.opcodes import NVME_DISC_PORT, NVME_PORT
from .controller import ControllerOptions
from .discovery import Referral
from .namespace import Namespace, open_backend, parse_size
from .nqn import check_nqn
from .port import Port
from .registry import Registry
from .subsystem import MAX_CNTLID, Subsystem


class ConfigError(ValueError):
    """The configuration is wrong; the message says where and why."""


def parse_address(text: str, default_port: int = NVME_PORT) -> tuple[str, int]:
    """'127.0.0.1:4420', '[::1]:4420', '0.0.0.0', ':4420' or '4420' → (traddr, trsvcid)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif text.isdigit():
        host, port = "", text
    else:
        host, port = text, ""
    try:
        trsvcid = int(port) if port else default_port
    except ValueError:
        raise ConfigError(f"bad port in address {text!r}") from None
    if not 0 <= trsvcid <= 65535:
        raise ConfigError(f"port {trsvcid} out of range in {text!r}")
    return host or "0.0.0.0", trsvcid


@dataclass
class ListenConfig:
    traddr: str = "127.0.0.1"
    trsvcid: int = NVME_PORT
    discovery_only: bool = False
    portid: int = 0  # 0: numbered in order from 1
    ana: dict[int, str] = field(default_factory=dict)


@dataclass
class NamespaceConfig:
    source: str  # a path, or mem:SIZE
    nsid: int = 0
    size: int | str | None = None  # create or resize a regular file to this size
    block_size: int = 512
    uuid: str | None = None
    nguid: str | None = None
    eui64: str | None = None
    ana_group: int = 1
    readonly: bool = False
    hosts: list[str] | None = None  # None: every host the subsystem allows


@dataclass
class AnaConfig:
    port: int
    group: int
    state: str


@dataclass
class SubsystemConfig:
    nqn: str
    namespaces: list[NamespaceConfig] = field(default_factory=list)
    allow_hosts: list[str] = field(default_factory=list)
    allow_any_host: bool | None = None  # None: any host when allow_hosts is empty
    serial: str | None = None
    model: str = "pynvmetcp"
    ports: list[int] | None = None  # None: every I/O port
    version: str = "1.3"
    max_io_queues: int = 64
    max_nsid: int = 1024
    cntlid_min: int = 1
    cntlid_max: int = MAX_CNTLID
    ana: list[AnaConfig] = field(default_factory=list)


@dataclass
class ReferralConfig:
    traddr: str
    trsvcid: int = NVME_DISC_PORT
    portid: int = 0


@dataclass
class TargetConfig:
    listen: list[ListenConfig] = field(default_factory=list)
    subsystems: list[SubsystemConfig] = field(default_factory=list)
    referrals: list[ReferralConfig] = field(default_factory=list)
    max_queue_size: int = 1024
    max_transfer: int = 1 << 20
    in_capsule_data: int = DEFAULT_IO_ICD_SIZE
    keepalive_tick: float = 0.25
    connect_timeout: float = 30.0  # a connection must send Connect within this many seconds
    current_discovery_entry: bool = True

    # ---- loading ----
    @classmethod
    def from_toml(cls, path: str | Path) -> TargetConfig:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        return cls.from_dict(data, where=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> TargetConfig:
        t = _Table(data, where)
        cfg = cls()
        limits = t.table("target")
        cfg.max_queue_size = limits.int("max_queue_size", cfg.max_queue_size)
        cfg.max_transfer = limits.size("max_transfer", cfg.max_transfer)
        cfg.in_capsule_data = limits.size("in_capsule_data", cfg.in_capsule_data)
        cfg.keepalive_tick = limits.float("keepalive_tick", cfg.keepalive_tick)
        cfg.connect_timeout = limits.float("connect_timeout", cfg.connect_timeout)
        cfg.current_discovery_entry = limits.bool("current_discovery_entry", True)
        limits.done()
        for lt in t.tables("listen"):
            traddr, trsvcid = _address(lt, NVME_PORT)
            ana = {}
            for group, state in lt.table("ana").items():
                ana[_int_key(group, lt)] = state
            cfg.listen.append(ListenConfig(traddr, trsvcid, lt.bool("discovery", False),
                                           lt.int("portid", 0), ana))
            lt.done()
        for rt in t.tables("referral"):
            traddr, trsvcid = _address(rt, NVME_DISC_PORT)
            cfg.referrals.append(ReferralConfig(traddr, trsvcid, rt.int("portid", 0)))
            rt.done()
        for st in t.tables("subsystem"):
            sub = SubsystemConfig(
                nqn=st.str("nqn"), allow_hosts=st.strlist("allow_hosts") or [],
                allow_any_host=st.bool("allow_any_host", None), serial=st.str("serial", None),
                model=st.str("model", "pynvmetcp"), ports=st.intlist("ports"),
                version=st.str("version", "1.3"), max_io_queues=st.int("max_io_queues", 64),
                max_nsid=st.int("max_nsid", 1024), cntlid_min=st.int("cntlid_min", 1),
                cntlid_max=st.int("cntlid_max", MAX_CNTLID))
            for nt in st.tables("namespace"):
                sub.namespaces.append(NamespaceConfig(
                    source=nt.str("path"), nsid=nt.int("nsid", 0),
                    size=nt.size("size", None), block_size=nt.int("block_size", 512),
                    uuid=nt.str("uuid", None), nguid=nt.str("nguid", None),
                    eui64=nt.str("eui64", None), ana_group=nt.int("ana_group", 1),
                    readonly=nt.bool("readonly", False), hosts=nt.strlist("hosts")))
                nt.done()
            for at in st.tables("ana"):
                sub.ana.append(AnaConfig(at.int("port"), at.int("group"), at.str("state")))
                at.done()
            st.done()
            cfg.subsystems.append(sub)
        t.done()
        return cfg

    # ---- building ----
    def options(self) -> ControllerOptions:
        try:
            return ControllerOptions(max_queue_size=self.max_queue_size,
                                     max_transfer=self.max_transfer,
                                     icd_size=self.in_capsule_data)
        except ValueError as exc:
            raise ConfigError(f"[target]: {exc}") from None

    def build_registry(self) -> Registry:
        """Ports, subsystems and namespaces (backends opened); ConfigError says what is wrong."""
        if not self.listen:
            raise ConfigError("no listen address (give at least one [[listen]] / --listen)")
        reg = Registry(current_discovery_entry=self.current_discovery_entry)
        try:
            self._populate(reg)
        except BaseException:
            reg.close()
            raise
        return reg

    def _populate(self, reg: Registry) -> None:
        used = {lc.portid for lc in self.listen if lc.portid}
        next_id = 1
        port_ana: list[tuple[int, dict[int, str]]] = []
        for lc in self.listen:
            portid = lc.portid
            if not portid:
                while next_id in used:
                    next_id += 1
                portid = next_id
                used.add(portid)
            if any((p.traddr, p.trsvcid) == (lc.traddr, lc.trsvcid) and lc.trsvcid
                   for p in reg.ports.values()):
                raise ConfigError(f"listen address {lc.traddr}:{lc.trsvcid} given twice")
            try:
                reg.add_port(Port(portid, lc.traddr, lc.trsvcid, lc.discovery_only))
            except ValueError as exc:
                raise ConfigError(f"[[listen]] {lc.traddr}:{lc.trsvcid}: {exc}") from None
            port_ana.append((portid, lc.ana))
        for rc in self.referrals:
            reg.discovery.referrals.append(Referral(rc.traddr, rc.trsvcid, rc.portid))
        for sc in self.subsystems:
            where = f"subsystem {sc.nqn}"
            try:
                version = {"1.3": NVME_VS_1_3, "1.4": NVME_VS_1_4}[sc.version]
            except KeyError:
                raise ConfigError(f"{where}: version must be \"1.3\" or \"1.4\"") from None
            for p in sc.ports or ():
                if p not in reg.ports:
                    raise ConfigError(f"{where}: no port with id {p}")
            try:
                sub = Subsystem(sc.nqn, serial=sc.serial, model=sc.model,
                                allow_any_host=sc.allow_any_host, hosts=sc.allow_hosts,
                                ports=sc.ports, max_nsid=sc.max_nsid,
                                cntlid_min=sc.cntlid_min, cntlid_max=sc.cntlid_max,
                                max_io_queues=sc.max_io_queues, version=version)
                reg.add_subsystem(sub)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            for nc in sc.namespaces:
                try:
                    sub.add_namespace(build_namespace(nc), nc.nsid or None)
                except (ValueError, OSError) as exc:
                    raise ConfigError(f"{where}, namespace {nc.source}: {exc}") from None
            try:
                for portid, ana in port_ana:
                    for group, state in ana.items():
                        sub.set_ana_state(portid, group, state)
                for ac in sc.ana:
                    if ac.port not in reg.ports:
                        raise ValueError(f"ANA state for unknown port {ac.port}")
                    sub.set_ana_state(ac.port, ac.group, ac.state)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None


def build_namespace(nc: NamespaceConfig) -> Namespace:
    """Open the backend of ``nc`` and wrap it (ValueError/OSError when it cannot be used)."""
    size = parse_size(nc.size) if nc.size is not None else None
    backend = open_backend(nc.source, readonly=nc.readonly, size=size)
    try:
        return Namespace(backend, nsid=nc.nsid, block_size=nc.block_size, uuid=nc.uuid,
                         nguid=nc.nguid, eui64=nc.eui64, ana_group=nc.ana_group,
                         readonly=nc.readonly, hosts=nc.hosts, source=nc.source)
    except BaseException:
        backend.close()
        raise


# ---- TOML table access with readable errors ----
class _Table:
    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table")
        self.data = dict(data)
        self.where = where
        self.seen: set[str] = set()

    def _get(self, key: str, default: Any, types: tuple, what: str) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise ConfigError(f"{self.where}: missing {key!r}")
            return default
        value = self.data[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(f"{self.where}: {key!r} must be {what}")
        return value

    def str(self, key: str, default: Any = ...) -> Any:
        return self._get(key, _REQUIRED if default is ... else default, (str,), "a string")

    def int(self, key: str, default: Any = ...) -> Any:
        return self._get(key, _REQUIRED if default is ... else default, (int,), "an integer")

    def float(self, key: str, default: Any) -> Any:
        return float(self._get(key, default, (int, float), "a number"))

    def bool(self, key: str, default: Any) -> Any:
        return self._get(key, default, (bool,), "true or false")

    def size(self, key: str, default: Any) -> Any:
        value = self._get(key, default, (int, str), "a size (e.g. 1048576 or \"1M\")")
        try:
            return parse_size(value) if value is not None else None
        except ValueError as exc:
            raise ConfigError(f"{self.where}: {key!r}: {exc}") from None

    def strlist(self, key: str) -> list[str] | None:
        value = self._get(key, None, (list,), "a list of strings")
        if value is not None and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.where}: {key!r} must be a list of strings")
        return value

    def intlist(self, key: str) -> list[int] | None:
        value = self._get(key, None, (list,), "a list of integers")
        if value is not None and not all(isinstance(v, int) for v in value):
            raise ConfigError(f"{self.where}: {key!r} must be a list of integers")
        return value

    def table(self, key: str) -> _Table:
        return _Table(self._get(key, {}, (dict,), "a table"), f"{self.where} [{key}]")

    def tables(self, key: str) -> list[_Table]:
        items = self._get(key, [], (list,), f"an array of tables ([[{key}]])")
        return [_Table(v, f"{self.where} [[{key}]] #{i + 1}") for i, v in enumerate(items)]

    def items(self):
        self.seen.update(self.data)
        return self.data.items()

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(f"{self.where}: unknown key {unknown[0]!r}")


_REQUIRED = object()


def _address(t: _Table, default_port: int) -> tuple[str, int]:
    if "address" in t.data:
        return parse_address(t.str("address"), default_port)
    return t.str("traddr", "0.0.0.0"), t.int("trsvcid", default_port)


def _int_key(key: str, t: _Table) -> int:
    try:
        return int(key)
    except ValueError:
        raise ConfigError(f"{t.where}: ANA group {key!r} is not a number") from None


def check_subsystem_nqn(nqn: str) -> str:
    try:
        return check_nqn(nqn, "subsystem NQN")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
