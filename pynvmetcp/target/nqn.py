"""NQN rules as a target enforces them (pitfall 18), with the reason a bad one is refused.

A Connect naming a malformed NQN is answered with Connect Invalid Parameters pointing at the field,
so the check returns a reason instead of raising: the caller decides what status it becomes.
"""
from __future__ import annotations

import re
import uuid as _uuid

from ..spec.fabrics import NQN_MAX_LEN
from ..spec.opcodes import DISCOVERY_NQN

UUID_NQN_PREFIX = "nqn.2014-08.org.nvmexpress:uuid:"
# nqn.yyyy-mm.<reverse domain>[:<anything>]: a valid month and a non-empty domain part.
_NQN = re.compile(r"^nqn\.(\d{4})-(0[1-9]|1[0-2])\.[A-Za-z0-9][^:\s]*(:\S.*)?$")


def nqn_problem(nqn: str) -> str | None:
    """Why ``nqn`` is not a valid NQN, or None when it is."""
    if not nqn:
        return "empty NQN"
    if len(nqn.encode()) > NQN_MAX_LEN:
        return f"NQN longer than {NQN_MAX_LEN} bytes"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in nqn):
        return "NQN contains control characters"
    if nqn == DISCOVERY_NQN:
        return None
    if nqn.startswith(UUID_NQN_PREFIX):
        try:
            _uuid.UUID(nqn[len(UUID_NQN_PREFIX):])
        except ValueError:
            return "UUID NQN with a malformed UUID"
        return None
    if not _NQN.match(nqn):
        return "NQN is not of the form nqn.yyyy-mm.reverse.domain[:name]"
    return None


def check_nqn(nqn: str, what: str = "NQN") -> str:
    """Configuration-time check: raise ValueError with a readable reason."""
    why = nqn_problem(nqn)
    if why:
        raise ValueError(f"{what} {nqn!r}: {why}")
    return nqn
