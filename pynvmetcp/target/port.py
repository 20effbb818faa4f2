"""A port: one listening address of the target (the PORTID of its discovery log entries).

A discovery-only port serves only the discovery subsystem; an I/O port serves the NVM subsystems
exported on it *and* discovery, as the kernel's nvmet does. ANA states are kept per (subsystem,
port, group) by the subsystem, because ANA group IDs are a subsystem's own numbering.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..spec.opcodes import AdrFam


def adrfam_of(traddr: str) -> AdrFam:
    try:
        return AdrFam.IPV6 if ipaddress.ip_address(traddr).version == 6 else AdrFam.IPV4
    except ValueError:
        return AdrFam.IPV4  # a host name: the resolver decides, IPv4 is the common case


def is_wildcard(traddr: str) -> bool:
    return traddr in ("", "0.0.0.0", "::")


@dataclass(eq=False)
class Port:
    """``trsvcid`` 0 asks for an ephemeral port; the server writes the bound one back."""

    portid: int
    traddr: str
    trsvcid: int
    discovery_only: bool = False

    @property
    def adrfam(self) -> AdrFam:
        return adrfam_of(self.traddr)

    def __str__(self) -> str:
        host = f"[{self.traddr}]" if ":" in self.traddr else self.traddr
        return f"{host}:{self.trsvcid}"
