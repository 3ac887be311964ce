"""Health, the HTTP endpoint and its settings: readiness checks, a stuck loop, broker errors retried by
the service, basic auth and TLS on real sockets (a self-signed certificate made by openssl)."""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import parse_config
from monitor.config.http import EXPORTER_PASSWORD_ENV, HttpSettings
from monitor.engine.detector import Detector, DetectorSettings, Engine
from monitor.errors import ConfigError, MonitorError
from monitor.logs import Hush
from monitor.observability.exporter import Exporter
from monitor.observability.health import Health
from monitor.observability.http import serve
from monitor.records import Message
from monitor.service.loop import Service
from tests.unit.test_detector import FakeScorer

PASSWORD = "s3cret:with colon"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_ready(health: Health) -> None:
    for name in ("model", "partitions", "broker"):
        health.check(name, True)


def test_not_ready_until_model_partitions_and_broker_all_pass(caplog):
    health = Health()
    ok, why = health.ready()
    assert not ok
    assert why == "model: model not loaded; partitions: no partitions assigned; broker: broker not polled yet"
    health.check("model", True)
    health.check("broker", True)
    assert health.ready() == (False, "partitions: no partitions assigned")
    with caplog.at_level(logging.INFO, logger="monitor.observability.health"):
        health.check("partitions", True)
        health.check("partitions", True)  # no change, no second line
        health.check("broker", False, "poll failed: timeout")
    assert health.ready() == (False, "broker: poll failed: timeout")
    assert [r.event_name for r in caplog.records] == ["ready", "not_ready"]
    assert caplog.records[1].event_fields == {"why": "broker: poll failed: timeout"}


def test_alive_until_the_loop_stops_polling():
    clock = Clock()
    health = Health(stuck_after_s=60, clock=clock)
    clock.now += 59
    assert health.alive() == (True, "ok")
    clock.now += 2
    ok, why = health.alive()
    assert not ok and why == "stuck: no poll for 61s (limit 60s)"
    health.polled()
    assert health.alive() == (True, "ok")


class BrokerDown(Exception):
    pass


class FlakySource:
    """Raises or returns what `script` says, one entry per call; records readiness at every poll."""

    def __init__(self, health: Health, polls: list, commits: list) -> None:
        self.health, self.polls, self.commits = health, polls, commits
        self.readiness: list[tuple[bool, str]] = []

    def poll(self) -> list[Message] | None:
        self.readiness.append(self.health.ready())
        return _play(self.polls.pop(0))

    def commit(self, limits=None) -> None:
        _play(self.commits.pop(0))

    def assigned(self) -> bool:
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        return {}

    def close(self) -> None:
        pass


def _play(step: object) -> object:
    if isinstance(step, Exception):
        raise step
    return step


class NullSink:
    def publish(self, alert: object) -> None: ...

    def dead_letter(self, message: object, rejected: object) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def test_broker_errors_make_the_service_unready_and_are_retried(monkeypatch, caplog):
    monkeypatch.setattr("monitor.service.loop.BACKOFF_S", (0.001, 0.001))
    health, exporter = Health(), Exporter()
    health.check("model", True)
    point = Message(b'{"series": "a", "ts": 1, "value": 1}', None, "metrics", 0, 7)
    polls = [BrokerDown("no answer"), [point], [point], [], None]
    commits = [BrokerDown("commit timed out"), None]
    source = FlakySource(health, polls, commits)
    engine = Engine([Detector(DetectorSettings(window=8), FakeScorer())])
    service = Service(engine, source, NullSink(), exporter, health, transient=(BrokerDown,))
    with caplog.at_level(logging.INFO):
        summary = service.run()
    assert summary.messages == 2
    assert source.readiness[1:] == [
        (False, "partitions: no partitions assigned; broker: poll failed: BrokerDown: no answer"),
        (False, "broker: commit failed: BrokerDown: commit timed out"),
        (True, "ready"),
        (True, "ready"),
    ]
    errors = [r.event_fields for r in caplog.records if getattr(r, "event_name", "") == "broker_error"]
    # Records came after the failed poll, but only a commit proves the broker answers: the failed commit
    # belongs to the same outage, which ends at the commit that went through.
    assert [e["operation"] for e in errors] == ["poll"], "one line per outage"
    back = [r.event_fields for r in caplog.records if getattr(r, "event_name", "") == "broker_back"]
    assert [b["attempts"] for b in back] == [2]
    events = [r.event_name for r in caplog.records if hasattr(r, "event_name")]
    assert events[-2:] == ["stopping", "stopped"]
    assert exporter.registry.get_sample_value("monitor_last_commit_timestamp_seconds") > 0, "the retry committed"


def test_errors_that_are_not_transient_still_stop_the_service():
    health = Health()
    source = FlakySource(health, [ValueError("a bug")], [])
    engine = Engine([Detector(DetectorSettings(window=8), FakeScorer())])
    service = Service(engine, source, NullSink(), Exporter(), health, transient=(BrokerDown,))
    with pytest.raises(ValueError, match="a bug"):
        service.run()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command line tool."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def endpoint(request: pytest.FixtureRequest) -> Iterator[tuple[str, Health]]:
    """`serve()` on a free port with the HttpSettings the test passes as its parameter."""
    settings = getattr(request, "param", HttpSettings())
    health, exporter = Health(), Exporter()
    exporter.set_model("default", "fake-1", "fake")
    server = serve(exporter, health, "127.0.0.1", 0, settings)
    scheme = "https" if settings.tls_cert_file else "http"
    yield f"{scheme}://127.0.0.1:{server.server_port}", health
    server.shutdown()
    server.server_close()


def get(url: str, auth: str | None = None, context: ssl.SSLContext | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_probes_and_metrics(endpoint):
    url, health = endpoint
    status, _, body = get(f"{url}/healthz")
    assert (status, body) == (200, "ok\n")
    status, _, body = get(f"{url}/readyz")
    assert status == 503 and "partitions: no partitions assigned" in body
    make_ready(health)
    status, _, body = get(f"{url}/readyz")
    assert (status, body) == (200, "ready\n")
    status, headers, body = get(f"{url}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    assert 'monitor_model_info{detector="default",kind="fake",version="fake-1"} 1.0' in body
    assert get(f"{url}/nope")[0] == 404


AUTH = HttpSettings(basic_auth_username="prometheus", basic_auth_password=PASSWORD)


@pytest.mark.parametrize("endpoint", [AUTH], indirect=True)
def test_basic_auth_guards_metrics_but_not_the_probes(endpoint):
    url, _ = endpoint
    status, headers, _ = get(f"{url}/metrics")
    assert status == 401 and headers["WWW-Authenticate"].startswith('Basic realm="anomaly-monitor"')
    assert get(f"{url}/metrics", auth="prometheus:wrong")[0] == 401
    assert get(f"{url}/metrics", auth="someone:" + PASSWORD)[0] == 401
    assert get(f"{url}/metrics", auth=f"prometheus:{PASSWORD}")[0] == 200
    assert get(f"{url}/healthz")[0] == 200


@pytest.fixture
def tls_endpoint(certificate) -> Iterator[tuple[str, Health]]:
    cert, key = certificate
    settings = HttpSettings(tls_cert_file=cert, tls_key_file=key, basic_auth_username="p", basic_auth_password="pw")
    server = serve(Exporter(), Health(), "127.0.0.1", 0, settings)
    yield f"127.0.0.1:{server.server_port}", server
    server.shutdown()
    server.server_close()


def test_tls_serves_a_verifying_client_and_refuses_plain_http(tls_endpoint, certificate):
    address, _ = tls_endpoint
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    assert get(f"https://{address}/metrics", auth="p:pw", context=trusting)[0] == 200
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(f"https://{address}/healthz", context=ssl.create_default_context())
    with pytest.raises(OSError):
        get(f"http://{address}/healthz")


def test_a_client_that_never_completes_the_handshake_does_not_block_others(tls_endpoint, certificate):
    address, _ = tls_endpoint
    host, port = address.split(":")
    with socket.create_connection((host, int(port))):  # connects, sends nothing
        trusting = ssl.create_default_context(cafile=str(certificate[0]))
        assert get(f"https://{address}/healthz", context=trusting)[0] == 200


def test_unusable_certificate_or_port_stop_the_start_with_a_clear_message(tmp_path):
    missing = HttpSettings(tls_cert_file=tmp_path / "no.pem", tls_key_file=tmp_path / "no.key")
    with pytest.raises(ConfigError, match=r"exporter.tls_cert_file, exporter.tls_key_file: cannot load .*no.pem"):
        serve(Exporter(), Health(), "127.0.0.1", 0, missing)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MonitorError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(Exporter(), Health(), "127.0.0.1", port)


def test_endpoint_settings_from_the_config(tmp_path):
    env = {EXPORTER_PASSWORD_ENV: PASSWORD}
    doc = {"exporter": {"tls_cert_file": "c.pem", "tls_key_file": "/abs/k.pem", "basic_auth_username": "prometheus",
                        "stuck_after_s": 30}}  # fmt: skip
    http = parse_config(doc, base_dir=tmp_path, environ=env).http
    assert (http.tls_cert_file, http.tls_key_file) == (tmp_path / "c.pem", Path("/abs/k.pem"))
    assert (http.basic_auth_username, http.basic_auth_password, http.stuck_after_s) == ("prometheus", PASSWORD, 30.0)
    assert PASSWORD not in repr(http) and PASSWORD not in repr(parse_config(doc, environ=env))
    assert parse_config({}, environ=env).http == HttpSettings(), "a password alone turns nothing on"


@pytest.mark.parametrize(
    ("exporter", "message"),
    [
        ({"tls_cert_file": "c.pem"}, "exporter.tls_cert_file, exporter.tls_key_file: set both or neither"),
        ({"tls_key_file": "k.pem"}, "exporter.tls_cert_file, exporter.tls_key_file: set both or neither"),
        ({"basic_auth_username": "p"}, f"exporter.basic_auth_username: needs the password in {EXPORTER_PASSWORD_ENV}"),
        ({"basic_auth_password": "x"}, "exporter.basic_auth_password: secrets are not read from the file; set "
                                       + EXPORTER_PASSWORD_ENV),
        ({"stuck_after_s": 0}, "exporter.stuck_after_s: must be a number >= 1.0, got 0"),
    ],
)  # fmt: skip
def test_endpoint_setting_errors_name_the_key(exporter, message):
    with pytest.raises(ConfigError) as info:
        parse_config({"exporter": exporter}, environ={})
    assert str(info.value) == f"config.yaml: {message}"


CHATTY = "kafka.net.connection.chatty-test"
"""The chatty source's logger: a kafka logger of its own, so that kafka-python clients other tests left
behind in this process (logging on their own threads) cannot start or end the holding under this test."""


class ChattySource(FlakySource):
    """Logs an ERROR on a kafka-python logger at every poll, as the client does while no broker answers."""

    def poll(self) -> list[Message] | None:
        logging.getLogger(CHATTY).error("socket disconnected")
        return super().poll()


def test_the_client_librarys_errors_during_an_outage_become_one_line_with_a_count(monkeypatch, caplog):
    monkeypatch.setattr("monitor.service.loop.BACKOFF_S", (0.001, 0.001))
    shown: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = shown.append  # type: ignore[method-assign]
    hush = Hush(CHATTY)
    monkeypatch.setattr("monitor.service.loop.CLIENT_LOGS", hush)
    handler.addFilter(hush)
    logging.getLogger().addHandler(handler)
    health = Health()
    point = Message(b'{"series": "a", "ts": 1767225600, "value": 1}', None, "metrics", 0, 7)
    polls = [BrokerDown("no answer")] * 5 + [[], [point], None]
    source = ChattySource(health, polls, [None, None])
    service = Service(Engine([Detector(DetectorSettings(window=8), FakeScorer())]), source, NullSink(), Exporter(),
                      health, transient=(BrokerDown,))  # fmt: skip
    try:
        with caplog.at_level(logging.INFO):
            service.run()
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [(r.name, getattr(r, "event_name", None)) for r in shown if r.levelno >= logging.WARNING]
    # The first error shows and starts the holding; so does the first one after the broker answered again.
    assert lines.count((CHATTY, None)) == 2, lines
    assert lines.count(("monitor.service.loop", "broker_error")) == 1
    [back] = [r.event_fields for r in shown if getattr(r, "event_name", None) == "broker_back"]
    assert back["attempts"] == 5 and back["client_errors"] == 6, back
    assert back["first"] == "socket disconnected"
