"""Target test helpers: a live target on ephemeral loopback ports (starting one takes ~ms)."""
from __future__ import annotations

from contextlib import contextmanager

from pynvmetcp.target import (ListenConfig, NamespaceConfig, SubsystemConfig, Target,
                              TargetConfig)

NQN = "nqn.2024-01.io.pynvmetcp:test-disk"
NQN2 = "nqn.2024-01.io.pynvmetcp:test-other"


def make_config(*, namespaces=("mem:16M",), allow_hosts=(), discovery_port: bool = True,
                extra_subsystems=(), **subsystem_kw) -> TargetConfig:
    listen = [ListenConfig("127.0.0.1", 0)]
    if discovery_port:
        listen.append(ListenConfig("127.0.0.1", 0, discovery_only=True))
    subs = [SubsystemConfig(NQN, namespaces=[NamespaceConfig(s) if isinstance(s, str) else s
                                             for s in namespaces],
                            allow_hosts=list(allow_hosts), **subsystem_kw)]
    subs.extend(extra_subsystems)
    return TargetConfig(listen=listen, subsystems=subs, keepalive_tick=0.05)


@contextmanager
def running(config: TargetConfig | None = None):
    with Target.serve(config or make_config()) as t:
        yield t
