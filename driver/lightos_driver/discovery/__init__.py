"""The discovery-client service: entry files → discovery connections → kernel I/O controllers.

Compatible with Lightbits' discovery-client (same entry-file directory and syntax, same
internal.json, same metrics port and names), so os-brick's LightOS connector and ours both work
with it. The moving parts, one module each:

* ``watcher``  — inotify on discovery.d (create, rename, delete, close-after-write).
* ``session``  — one persistent discovery controller (pynvmetcp userspace host: keep-alive and
  the discovery-log-change AEN).
* ``kernel_io``— I/O controllers through the kernel fallback (pynvmetcp.kernel).
* ``cluster``  — per (subsysnqn, hostnqn): failover among endpoints, referrals, log → controllers.
* ``metrics``  — Prometheus text on /metrics (GET and HEAD, as os-brick probes it).
* ``service``  — ties them together; acts on removed files too (upstream does not).
"""
from .service import DiscoveryService, ServiceConfig

__all__ = ["DiscoveryService", "ServiceConfig"]
