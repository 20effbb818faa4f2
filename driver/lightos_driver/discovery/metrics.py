"""Prometheus metrics on /metrics, named as Lightbits' discovery-client names them.

os-brick's LightOS connector decides ``found_dsc`` with ``HEAD /metrics`` on port 6060, so the
endpoint answers HEAD as well as GET (prometheus_client's own server is not relied on for that).
It listens on ``[::]`` (IPv4 too, through a dual-stack socket) unless told otherwise.
"""
from __future__ import annotations

import http.server
import logging
import socket
import threading

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("discovery_connections_total",
                                 "Number of connections to different discovery servers",
                                 ["trtype", "traddr", "trsvcid", "nqn", "hostnqn"], registry=r)
        self.connection_state = Gauge("discovery_connection_state",
                                      "Show if a connection to discovery service is working or not",
                                      ["trtype", "traddr", "trsvcid", "nqn"], registry=r)
        self.entries_total = Gauge("discovery_entries_total", "Number of entries we monitor",
                                   registry=r)
        self.log_page_count = Gauge("discovery_log_page_count",
                                    "Number of discovery log pages for hostnqn", ["hostnqn"],
                                    registry=r)
        self.io_controllers = Gauge("lightos_io_controllers",
                                    "Kernel I/O controllers this service keeps, per cluster",
                                    ["nqn", "hostnqn"], registry=r)
        self.rejected_files = Gauge("lightos_rejected_entry_files",
                                    "Entry files rejected for a format error", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DualStackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        super().server_bind()


class MetricsServer:
    def __init__(self, metrics: Metrics, host: str = "::", port: int = 6060) -> None:
        self.metrics = metrics
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        m = metrics

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                data = m.render()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

            def log_message(self, fmt: str, *args) -> None:
                log.debug("metrics: " + fmt, *args)

        def server(fam: int) -> type:
            return type("MetricsHTTPServer", (_DualStackServer,), {"address_family": fam})

        try:
            self.httpd = server(family)((host, port), Handler)
        except OSError:
            if family != socket.AF_INET6 or host != "::":
                raise
            self.httpd = server(socket.AF_INET)(("0.0.0.0", port), Handler)  # no IPv6 here
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="dc-metrics",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
