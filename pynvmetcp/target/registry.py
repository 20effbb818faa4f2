"""Everything one target serves: ports, NVM subsystems and the discovery subsystem.

Connect looks subsystems up here, the discovery log is computed from here, and the keep-alive timer
walks every controller here. Changes that alter the discovery log funnel into
``discovery.changed()`` so GENCTR and the log-change events cannot be forgotten.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterator

from .discovery import DiscoverySubsystem
from .port import Port
from .subsystem import Subsystem

if TYPE_CHECKING:
    from .controller import Controller

log = logging.getLogger(__name__)


class Registry:
    def __init__(self, *, current_discovery_entry: bool = True) -> None:
        self.ports: dict[int, Port] = {}
        self.subsystems: dict[str, Subsystem] = {}
        self.discovery = DiscoverySubsystem(self, current_entry=current_discovery_entry)

    # ---- ports ----
    def add_port(self, port: Port) -> Port:
        if port.portid in self.ports:
            raise ValueError(f"port id {port.portid} is already used")
        self.ports[port.portid] = port
        self.discovery.changed()
        return port

    def remove_port(self, portid: int) -> Port:
        port = self.ports.pop(portid)
        for ctrl in list(self.controllers()):
            if ctrl.port is port:
                ctrl.drop("port removed")
        self.discovery.changed()
        return port

    # ---- subsystems ----
    def add_subsystem(self, sub: Subsystem) -> Subsystem:
        if sub.nqn in self.subsystems or sub.nqn == self.discovery.nqn:
            raise ValueError(f"subsystem {sub.nqn} already exists")
        self.subsystems[sub.nqn] = sub
        sub.on_discovery_change = self.discovery.changed
        self.discovery.changed()
        return sub

    def remove_subsystem(self, nqn: str) -> Subsystem:
        sub = self.subsystems.pop(nqn)
        sub.on_discovery_change = lambda: None
        for ctrl in list(sub.controllers.values()):
            ctrl.drop("subsystem removed")
        sub.close()
        self.discovery.changed()
        return sub

    def find(self, nqn: str) -> Subsystem | DiscoverySubsystem | None:
        if nqn == self.discovery.nqn:
            return self.discovery
        return self.subsystems.get(nqn)

    def controllers(self) -> Iterator[Controller]:
        yield from self.discovery.controllers.values()
        for sub in self.subsystems.values():
            yield from sub.controllers.values()

    def close(self) -> None:
        for ctrl in list(self.controllers()):
            ctrl.drop("target shutting down")
        for sub in self.subsystems.values():
            sub.close()
