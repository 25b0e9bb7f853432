"""Certificates for TLS tests, made with trustme and written as PEM files.

One test CA signs a server certificate for ``localhost``, ``127.0.0.1`` and
``::1``, an expired one, one for the wrong host name and a client
certificate; a second CA nobody trusts stands for "someone else's
certificate". The keys are made once per test session.

A test module gets the fixtures by naming this module as a plugin (the tests
directory is on ``sys.path``, as for :mod:`loopback`; ``tests.tls_certs``
would be a second copy of the module)::

    from typing import TYPE_CHECKING

    if TYPE_CHECKING:
        from tls_certs import TlsFiles

    pytest_plugins = ["tls_certs"]

    def test_something(tls_files: TlsFiles) -> None: ...

Import it for annotations only: a module imported before pytest registers
it as a plugin cannot have its asserts rewritten, and pytest warns. The
names each certificate is valid for travel with it (``tls_files.wrong_host
.names``), so tests need nothing else from here at run time. Adding
``"tls_certs"`` to ``pytest_plugins`` in ``tests/conftest.py`` would offer
the fixtures to every module at once, and then a plain import is fine too.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import attrs
import pytest
import trustme

from trio_echo.transport.tls import TlsClientSettings, TlsServerSettings

SERVER_IDENTITIES = ("localhost", "127.0.0.1", "::1")
"""The names the good server certificate is valid for: every loopback spelling."""

WRONG_HOST = "wrong.example"
"""The only name the wrong-host certificate is valid for."""

CLIENT_IDENTITY = "client@example.com"
"""The client certificate's one identity, an e-mail address as client certificates carry."""


@attrs.frozen
class CertFiles:
    """One certificate's PEM files: the chain, the key, and both in one file."""

    names: tuple[str, ...]
    """The identities (host names, addresses, e-mail) the certificate is valid for."""
    cert: Path
    key: Path
    combined: Path


@attrs.frozen
class TlsFiles:
    """Every PEM file the TLS tests use, in one temporary directory."""

    ca: Path
    """The test CA's certificate: what a client (or a server checking clients) trusts."""
    other_ca: Path
    """A CA that signed nothing here: trusting it trusts none of the certificates."""
    server: CertFiles
    """Valid for localhost, 127.0.0.1 and ::1."""
    expired: CertFiles
    """Valid for the same names, but its validity ended yesterday."""
    wrong_host: CertFiles
    """Valid, signed by the test CA, for ``wrong.example`` only."""
    client: CertFiles
    """A client certificate signed by the test CA."""
    garbage: Path
    """A file that is not PEM at all."""

    def server_settings(self, **overrides: object) -> TlsServerSettings:
        """Server settings presenting the good certificate; keyword overrides win."""
        fields: dict[str, object] = {"certfile": self.server.cert, "keyfile": self.server.key}
        fields.update(overrides)
        return TlsServerSettings(**fields)  # type: ignore[arg-type]

    def client_settings(self, **overrides: object) -> TlsClientSettings:
        """Client settings trusting the test CA; keyword overrides win."""
        fields: dict[str, object] = {"cafile": self.ca}
        fields.update(overrides)
        return TlsClientSettings(**fields)  # type: ignore[arg-type]


def issue(
    ca: trustme.CA,
    names: tuple[str, ...],
    directory: Path,
    name: str,
    validity: tuple[datetime.datetime, datetime.datetime] | None = None,
) -> CertFiles:
    """Issue a certificate for *names*, written as NAME.pem, NAME.key and NAME-combined.pem.

    NAME.pem holds the chain, NAME.key the key, NAME-combined.pem both;
    *validity*, when given, is (``not_before``, ``not_after``).
    """
    not_before, not_after = validity or (None, None)
    cert = ca.issue_cert(*names, not_before=not_before, not_after=not_after)
    files = CertFiles(
        names=names,
        cert=directory / f"{name}.pem",
        key=directory / f"{name}.key",
        combined=directory / f"{name}-combined.pem",
    )
    files.cert.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(files.key))
    cert.private_key_and_cert_chain_pem.write_to_path(str(files.combined))
    return files


def expired_validity() -> tuple[datetime.datetime, datetime.datetime]:
    """A validity period that ended a day ago (``not_before``, ``not_after``)."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """The test CA, for tests that issue certificates of their own."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_files(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """The PEM files of every certificate above, written once per session."""
    directory = tmp_path_factory.mktemp("tls")
    ca = directory / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    other_ca = directory / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    garbage = directory / "garbage.pem"
    garbage.write_bytes(b"0 - Send Message\n")
    return TlsFiles(
        ca=ca,
        other_ca=other_ca,
        server=issue(tls_ca, SERVER_IDENTITIES, directory, "server"),
        expired=issue(tls_ca, SERVER_IDENTITIES, directory, "expired", expired_validity()),
        wrong_host=issue(tls_ca, (WRONG_HOST,), directory, "wrong-host"),
        client=issue(tls_ca, (CLIENT_IDENTITY,), directory, "client"),
        garbage=garbage,
    )
