"""The HTTP endpoint: `/metrics` for Prometheus, `/healthz` and `/readyz` for orchestrators.

Optional TLS (a certificate and key file) and basic auth (a username, the password from the
environment). Basic auth guards `/metrics` only: kubelet and load-balancer probes rarely carry
credentials, and the probes disclose no more than "ok" or the names of failing checks. The TLS handshake
runs in the request's own thread with a timeout, so a client that never finishes it cannot block the
accept loop.
"""

from __future__ import annotations

import base64
import hmac
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor.config.http import HttpSettings
from monitor.errors import ConfigError, MonitorError
from monitor.observability.exporter import Exporter
from monitor.observability.health import Health

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
REALM = 'Basic realm="anomaly-monitor", charset="UTF-8"'


def serve(
    exporter: Exporter, health: Health, host: str, port: int, settings: HttpSettings | None = None
) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; returns the server (its `server_port` is the bound port)."""
    settings = settings or HttpSettings()

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S

        def setup(self) -> None:
            super().setup()
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                if not _authorized(settings, self.headers.get("Authorization", "")):
                    self._send(401, b"unauthorized\n", headers={"WWW-Authenticate": REALM})
                    return
                self._send(200, exporter.render(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._probe(*health.alive())
            elif path == "/readyz":
                self._probe(*health.ready())
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _probe(self, ok: bool, why: str) -> None:
            self._send(200 if ok else 503, why.encode() + b"\n")

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str = "text/plain; charset=utf-8",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
            pass

    context = _tls_context(settings)
    try:
        server = _Server((host, port), Handler)
    except OSError as exc:
        raise MonitorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A failed handshake or a client that hung up is the client's problem, not a traceback on stderr."""
        log.debug("request from %s failed", client_address, exc_info=True)


def _tls_context(settings: HttpSettings) -> ssl.SSLContext | None:
    """Loaded before binding the port, so a bad certificate stops the start with its paths."""
    if settings.tls_cert_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except OSError as exc:  # ssl.SSLError is one too
        files = f"{settings.tls_cert_file}, {settings.tls_key_file}"
        raise ConfigError(f"exporter.tls_cert_file, exporter.tls_key_file: cannot load {files}: {exc}") from None
    return context


def _authorized(settings: HttpSettings, header: str) -> bool:
    """Basic auth, compared in constant time; always true when no username is configured."""
    if settings.basic_auth_username is None:
        return True
    kind, _, token = header.partition(" ")
    if kind.lower() != "basic":
        return False
    try:
        username, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except ValueError:  # bad base64 (binascii.Error) or bad UTF-8 (UnicodeDecodeError)
        return False
    same_user = hmac.compare_digest(username.encode(), settings.basic_auth_username.encode())
    same_password = hmac.compare_digest(password.encode(), (settings.basic_auth_password or "").encode())
    return bool(sep) and same_user and same_password


def scheme(settings: HttpSettings) -> str:
    return "https" if settings.tls_cert_file is not None else "http"
