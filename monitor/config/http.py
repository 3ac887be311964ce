"""The `exporter` section's endpoint options: TLS, basic auth, when `/healthz` calls the loop stuck.

Kept apart from `monitor.config` so that module stays readable; the same rules apply: one-line errors
naming the key path, and the password only from the environment, never from the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from monitor.config.reader import Invalid, Section

EXPORTER_PASSWORD_ENV = "MONITOR_EXPORTER_PASSWORD"
TLS_KEYS = ("tls_cert_file", "tls_key_file")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """How the exporter's endpoint is protected, and when its `/healthz` calls the run loop stuck."""

    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    basic_auth_username: str | None = None
    basic_auth_password: str | None = None
    stuck_after_s: float = 60.0

    def __repr__(self) -> str:  # never print the secret
        return f"HttpSettings(tls={self.tls_cert_file is not None}, basic_auth={self.basic_auth_username!r})"


def parse_http(s: Section, base_dir: Path, environ: Mapping[str, str]) -> HttpSettings:
    """Read the endpoint keys of the `exporter` section; the caller's `done()` rejects the rest."""
    cert, key = (s.text(k, None) for k in TLS_KEYS)
    if (cert is None) != (key is None):
        raise Invalid(f"{s.path_of(TLS_KEYS[0])}, {s.path_of(TLS_KEYS[1])}: set both or neither")
    if "basic_auth_password" in s.doc:
        where = s.path_of("basic_auth_password")
        raise Invalid(f"{where}: secrets are not read from the file; set {EXPORTER_PASSWORD_ENV}")
    username = s.text("basic_auth_username", None)
    password = environ.get(EXPORTER_PASSWORD_ENV) or None
    if username is not None and password is None:
        # An endpoint that is meant to be protected must not start open, nor locked for everyone.
        raise Invalid(f"{s.path_of('basic_auth_username')}: needs the password in {EXPORTER_PASSWORD_ENV}")
    return HttpSettings(
        tls_cert_file=None if cert is None else base_dir / cert,
        tls_key_file=None if key is None else base_dir / key,
        basic_auth_username=username,
        basic_auth_password=password if username is not None else None,
        stuck_after_s=s.number("stuck_after_s", HttpSettings().stuck_after_s, 1.0),
    )
