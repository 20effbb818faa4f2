"""Floor 4: the userspace NVMe/TCP target.

    from pynvmetcp.target import (Target, TargetConfig, ListenConfig, SubsystemConfig,
                                  NamespaceConfig)

    config = TargetConfig(listen=[ListenConfig("127.0.0.1", 4420)],
                          subsystems=[SubsystemConfig("nqn.2024-01.io.example:disk",
                                                      namespaces=[NamespaceConfig("mem:64M")])])
    with Target.serve(config) as t:
        ...

Modules, one job each: ``namespace`` (backends and namespaces), ``subsystem`` (NVM subsystem: hosts,
namespaces, ANA), ``discovery`` (the discovery log and its change events), ``port``, ``registry``
(what one target serves), ``connect`` (Fabrics Connect rules), ``controller`` (one association:
admin commands, properties, features, keep-alive, AER), ``pages`` (identify and log pages),
``nvm`` (the I/O command set), ``server`` (asyncio listeners and connections), ``config``
(dataclasses and TOML), ``api`` (``Target``: in a loop or a background thread).
"""
from .api import Target, new_event_loop
from .config import (ConfigError, ListenConfig, NamespaceConfig, ReferralConfig, SubsystemConfig,
                     TargetConfig, parse_address)
from .controller import Controller, ControllerOptions
from .discovery import DiscoverySubsystem, Referral
from .namespace import FileBackend, MemoryBackend, Namespace, open_backend, parse_size
from .port import Port
from .registry import Registry
from .server import TargetServer
from .subsystem import Subsystem

__all__ = ["Target", "new_event_loop", "TargetConfig", "ListenConfig", "SubsystemConfig",
           "NamespaceConfig", "ReferralConfig", "ConfigError", "parse_address", "Controller",
           "ControllerOptions", "DiscoverySubsystem", "Referral", "Namespace", "MemoryBackend",
           "FileBackend", "open_backend", "parse_size", "Port", "Registry", "TargetServer",
           "Subsystem"]
