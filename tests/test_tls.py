"""TLS settings, contexts and error descriptions, with real handshakes on loopback.

Handshakes use the stdlib only: a server thread and a client on 127.0.0.1,
both bounded by socket timeouts, so what is tested is exactly what both
drivers will put under their own I/O. Each failure case checks the line a
user would read on the side that meets the failure.
"""

from __future__ import annotations

import ast
import math
import os
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trustme
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

import trio_echo.transport.tls as tls_module
from trio_echo.errors import ConfigError, NetworkError, TlsError
from trio_echo.transport.tls import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    TlsClientSettings,
    TlsServerSettings,
    client_context,
    describe_tls_error,
    from_tls_error,
    root_ssl_error,
    server_context,
)

if TYPE_CHECKING:
    from tls_certs import TlsFiles

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

pytest_plugins = ["tls_certs"]

HOST = "127.0.0.1"
TIMEOUT = 5.0
"""Bound on every socket operation and on the server thread."""

MESSAGE = b"0 - Send Message"


def assert_one_line(text: str | None) -> str:
    """*text* is a description: present, one line, printable only (no control character)."""
    assert text is not None
    assert text.isprintable(), text
    return text


# Settings


def test_server_settings_accept_paths_and_default_the_handshake_timeout(
    tls_files: TlsFiles,
) -> None:
    settings = TlsServerSettings(certfile=tls_files.server.cert, keyfile=tls_files.server.key)
    assert settings.certfile == str(tls_files.server.cert)
    assert settings.keyfile == str(tls_files.server.key)
    assert settings.client_ca is None
    assert settings.handshake_timeout == DEFAULT_HANDSHAKE_TIMEOUT == 10.0
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.certfile = "other.pem"  # type: ignore[misc]


@pytest.mark.parametrize("field", ["certfile", "keyfile", "client_ca"])
def test_server_settings_name_a_missing_file(tls_files: TlsFiles, field: str) -> None:
    missing = tls_files.ca.parent / "missing.pem"
    with pytest.raises(ConfigError) as caught:
        tls_files.server_settings(**{field: missing})
    assert str(caught.value) == f"{field} '{missing}' does not exist"


@pytest.mark.parametrize("field", ["cafile", "certfile"])
def test_client_settings_name_a_missing_file(tls_files: TlsFiles, field: str) -> None:
    missing = tls_files.ca.parent / "missing.pem"
    with pytest.raises(ConfigError, match=rf"^{field} '.*missing\.pem' does not exist$"):
        tls_files.client_settings(**{field: missing})


def test_settings_name_a_directory(tls_files: TlsFiles) -> None:
    directory = tls_files.ca.parent
    with pytest.raises(ConfigError, match=r"^certfile '.*' is a directory, not a file$"):
        TlsServerSettings(certfile=directory)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root reads any file; Windows has no mode bits",
)
def test_settings_name_an_unreadable_file(tmp_path: Path) -> None:
    locked = tmp_path / "locked.pem"
    locked.write_bytes(b"")
    locked.chmod(0)
    with pytest.raises(ConfigError, match=r"^certfile '.*' is not readable \(permission denied\)$"):
        TlsServerSettings(certfile=locked)


@pytest.mark.parametrize("value", [None, "", 3])
def test_server_settings_need_a_certfile_path(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^certfile must be a file path, not "):
        TlsServerSettings(certfile=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, math.inf, math.nan, True, "10"])
def test_settings_refuse_a_bad_handshake_timeout(tls_files: TlsFiles, timeout: object) -> None:
    with pytest.raises(ConfigError, match=r"^handshake_timeout must be a positive number"):
        tls_files.server_settings(handshake_timeout=timeout)
    with pytest.raises(ConfigError, match=r"^handshake_timeout must be a positive number"):
        tls_files.client_settings(handshake_timeout=timeout)


def test_settings_accept_no_handshake_timeout(tls_files: TlsFiles) -> None:
    assert tls_files.server_settings(handshake_timeout=None).handshake_timeout is None
    assert tls_files.client_settings(handshake_timeout=2.5).handshake_timeout == 2.5


def test_client_settings_default_to_verifying_against_the_system_store() -> None:
    settings = TlsClientSettings()
    assert settings.cafile is None
    assert settings.insecure is False
    assert settings.certfile is None
    assert settings.handshake_timeout == DEFAULT_HANDSHAKE_TIMEOUT


def test_client_settings_refuse_a_key_without_a_certificate(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError, match=r"^keyfile needs certfile"):
        TlsClientSettings(keyfile=tls_files.client.key)


def test_client_settings_refuse_insecure_with_a_cafile(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError, match=r"^insecure skips verification, so cafile"):
        tls_files.client_settings(insecure=True)


@pytest.mark.parametrize("insecure", [1, "yes", None])
def test_client_settings_take_insecure_as_a_bool_only(insecure: object) -> None:
    with pytest.raises(ConfigError, match=r"^insecure must be True or False"):
        TlsClientSettings(insecure=insecure)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "bad\nname", 7])
def test_client_settings_refuse_a_bad_server_hostname(name: object) -> None:
    with pytest.raises(ConfigError, match=r"^server_hostname must be a host name"):
        TlsClientSettings(server_hostname=name)  # type: ignore[arg-type]


def test_the_name_checked_is_the_target_unless_overridden() -> None:
    assert TlsClientSettings().hostname_for("localhost") == "localhost"
    assert TlsClientSettings(server_hostname="echo.example").hostname_for("::1") == "echo.example"


# Contexts


def test_server_context_requires_tls_1_2_and_no_client_certificate_by_default(
    tls_files: TlsFiles,
) -> None:
    context = server_context(tls_files.server_settings())
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_NONE
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION


def test_server_context_with_client_ca_requires_a_client_certificate(tls_files: TlsFiles) -> None:
    context = server_context(tls_files.server_settings(client_ca=tls_files.ca))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] == 1


def test_server_context_loads_a_pem_holding_key_and_chain(tls_files: TlsFiles) -> None:
    context = server_context(TlsServerSettings(certfile=tls_files.server.combined))
    assert context.verify_mode is ssl.CERT_NONE


def test_a_garbage_certfile_is_one_line(tls_files: TlsFiles) -> None:
    settings = tls_files.server_settings(certfile=tls_files.garbage)
    with pytest.raises(ConfigError) as caught:
        server_context(settings)
    assert str(caught.value) == f"certfile '{tls_files.garbage}' holds no PEM certificate"
    assert caught.value.__cause__ is None


def test_a_garbage_keyfile_is_one_line(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError) as caught:
        server_context(tls_files.server_settings(keyfile=tls_files.garbage))
    assert str(caught.value) == f"keyfile '{tls_files.garbage}' holds no PEM private key"


def test_a_certfile_without_its_key_asks_for_keyfile(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError) as caught:
        server_context(TlsServerSettings(certfile=tls_files.server.cert))
    assert str(caught.value) == (
        f"certfile '{tls_files.server.cert}' holds no PEM private key; give keyfile"
    )


def test_a_mismatched_key_is_one_line(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError) as caught:
        server_context(tls_files.server_settings(keyfile=tls_files.client.key))
    assert str(caught.value) == (
        f"keyfile '{tls_files.client.key}' does not match certfile '{tls_files.server.cert}'"
    )


def test_a_combined_pem_with_a_foreign_key_is_one_line(tls_files: TlsFiles, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(tls_files.client.key.read_bytes() + tls_files.server.cert.read_bytes())
    with pytest.raises(ConfigError) as caught:
        server_context(TlsServerSettings(certfile=mixed))
    assert (
        str(caught.value) == f"certfile '{mixed}' holds a key that does not match its certificate"
    )


def test_an_encrypted_key_is_refused_without_a_prompt(tls_files: TlsFiles, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(tls_files.server.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(ConfigError) as caught:
        server_context(tls_files.server_settings(keyfile=encrypted))
    assert str(caught.value) == (
        f"keyfile '{encrypted}' holds an encrypted private key; give an unencrypted one"
    )


def test_a_garbage_client_ca_is_one_line(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError) as caught:
        server_context(tls_files.server_settings(client_ca=tls_files.garbage))
    assert str(caught.value) == f"client_ca '{tls_files.garbage}' holds no PEM certificate"


def test_a_garbage_cafile_is_one_line(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError) as caught:
        client_context(tls_files.client_settings(cafile=tls_files.garbage))
    assert str(caught.value) == f"cafile '{tls_files.garbage}' holds no PEM certificate"


def test_a_garbage_client_certificate_is_one_line(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError) as caught:
        client_context(tls_files.client_settings(certfile=tls_files.garbage))
    assert str(caught.value) == f"certfile '{tls_files.garbage}' holds no PEM certificate"


def test_client_context_verifies_by_default(tls_files: TlsFiles) -> None:
    context = client_context(tls_files.client_settings())
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.cert_store_stats()["x509_ca"] == 1, "only the given CA is trusted"


def test_insecure_client_context_checks_nothing() -> None:
    context = client_context(TlsClientSettings(insecure=True))
    assert context.verify_mode is ssl.CERT_NONE
    assert context.check_hostname is False


# Handshakes


@attrs.define
class Sides:
    """What each side of one loopback conversation got, or the error it met."""

    server_received: bytes = b""
    server_error: BaseException | None = None
    client_received: bytes = b""
    client_error: BaseException | None = None


Side = Callable[[socket.socket], bytes]


def converse(serve: Side, talk: Side) -> Sides:
    """Run *serve* on the accepted socket in a thread and *talk* on the client socket."""
    sides = Sides()
    with socket.create_server((HOST, 0)) as listener:
        listener.settimeout(TIMEOUT)

        def server_side() -> None:
            try:
                connection, _ = listener.accept()
                with connection:
                    connection.settimeout(TIMEOUT)
                    sides.server_received = serve(connection)
            except Exception as exc:
                sides.server_error = exc

        thread = threading.Thread(target=server_side)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname()[:2], timeout=TIMEOUT) as sock:
                try:
                    sides.client_received = talk(sock)
                except Exception as exc:
                    sides.client_error = exc
        finally:
            thread.join(TIMEOUT * 2)
        assert not thread.is_alive(), "the server thread outlived its timeouts"
    return sides


def tls_echo(context: ssl.SSLContext) -> Side:
    """A TLS server side: handshake, read one message, send it back."""

    def serve(connection: socket.socket) -> bytes:
        with context.wrap_socket(connection, server_side=True) as stream:
            data = stream.recv(1024)
            stream.sendall(data)
            return data

    return serve


def tls_round_trip(context: ssl.SSLContext, hostname: str, message: bytes | None = MESSAGE) -> Side:
    """A TLS client side: handshake, send *message* (unless None), read the answer."""

    def talk(sock: socket.socket) -> bytes:
        with context.wrap_socket(sock, server_hostname=hostname) as stream:
            if message is not None:
                stream.sendall(message)
            return stream.recv(1024)

    return talk


def plain_send(data: bytes) -> Side:
    """A plain-text client side: send *data*, read whatever comes back."""

    def talk(sock: socket.socket) -> bytes:
        sock.sendall(data)
        return sock.recv(1024)

    return talk


def plain_reply(connection: socket.socket) -> bytes:
    """A plain reply server side: answer the first read with ``Re:`` and it, then wait for EOF."""
    data = connection.recv(1024)
    connection.sendall(b"Re:" + data[:124])
    try:
        while connection.recv(1024):
            pass
    except OSError:
        pass
    return data


def hang_up(_sock: socket.socket) -> bytes:
    """A client side that connects and closes without a word."""
    return b""


def described(error: BaseException | None) -> str:
    """The description of a side's error, checked to be one printable line."""
    assert error is not None, "this side was expected to fail"
    return assert_one_line(describe_tls_error(error))


def test_a_good_handshake_carries_a_round_trip(tls_files: TlsFiles) -> None:
    sides = converse(
        tls_echo(server_context(tls_files.server_settings())),
        tls_round_trip(client_context(tls_files.client_settings()), "localhost"),
    )
    assert sides.server_error is None and sides.client_error is None
    assert sides.server_received == sides.client_received == MESSAGE


def test_a_certificate_for_the_ip_address_verifies_by_address(tls_files: TlsFiles) -> None:
    settings = tls_files.client_settings()
    sides = converse(
        tls_echo(server_context(tls_files.server_settings())),
        tls_round_trip(client_context(settings), settings.hostname_for(HOST)),
    )
    assert sides.client_error is None
    assert sides.client_received == MESSAGE


def test_a_client_without_the_ca_fails_verification(tls_files: TlsFiles) -> None:
    sides = converse(
        tls_echo(server_context(tls_files.server_settings())),
        tls_round_trip(client_context(TlsClientSettings()), "localhost"),
    )
    assert described(sides.client_error) == (
        "certificate verify failed: unable to get local issuer certificate"
        " (no trusted CA signed it)"
    )
    assert described(sides.server_error) == (
        "the peer rejected this side's certificate (unknown ca alert)"
    )


def test_a_self_signed_certificate_is_named(
    tls_files: TlsFiles, tls_ca: trustme.CA, tmp_path: Path
) -> None:
    self_signed = tmp_path / "self-signed.pem"
    self_signed.write_bytes(tls_ca.private_key_pem.bytes() + tls_ca.cert_pem.bytes())
    sides = converse(
        tls_echo(server_context(TlsServerSettings(certfile=self_signed))),
        tls_round_trip(client_context(tls_files.client_settings(cafile=tls_files.other_ca)), HOST),
    )
    assert described(sides.client_error) == (
        "certificate verify failed: self-signed certificate (no trusted CA signed it)"
    )


def test_an_expired_certificate_is_named(tls_files: TlsFiles) -> None:
    server = tls_files.server_settings(
        certfile=tls_files.expired.cert, keyfile=tls_files.expired.key
    )
    sides = converse(
        tls_echo(server_context(server)),
        tls_round_trip(client_context(tls_files.client_settings()), "localhost"),
    )
    assert described(sides.client_error) == "certificate verify failed: certificate has expired"
    assert "certificate expired alert" in described(sides.server_error)


def test_a_certificate_for_another_host_is_a_hostname_mismatch(tls_files: TlsFiles) -> None:
    server = tls_files.server_settings(
        certfile=tls_files.wrong_host.cert, keyfile=tls_files.wrong_host.key
    )
    sides = converse(
        tls_echo(server_context(server)),
        tls_round_trip(client_context(tls_files.client_settings()), "localhost"),
    )
    assert described(sides.client_error) == (
        "certificate verify failed: hostname mismatch, certificate is not valid for 'localhost'"
    )
    assert described(sides.server_error) == (
        "the peer rejected this side's certificate (bad certificate alert)"
    )


def test_server_hostname_overrides_the_name_checked(tls_files: TlsFiles) -> None:
    server = tls_files.server_settings(
        certfile=tls_files.wrong_host.cert, keyfile=tls_files.wrong_host.key
    )
    settings = tls_files.client_settings(server_hostname=tls_files.wrong_host.names[0])
    sides = converse(
        tls_echo(server_context(server)),
        tls_round_trip(client_context(settings), settings.hostname_for(HOST)),
    )
    assert sides.client_error is None
    assert sides.client_received == MESSAGE


@pytest.mark.parametrize("certificate", ["server", "expired", "wrong_host"])
def test_an_insecure_client_connects_whatever_the_certificate(
    tls_files: TlsFiles, certificate: str
) -> None:
    files = getattr(tls_files, certificate)
    sides = converse(
        tls_echo(server_context(tls_files.server_settings(certfile=files.cert, keyfile=files.key))),
        tls_round_trip(client_context(TlsClientSettings(insecure=True)), "localhost"),
    )
    assert sides.client_error is None and sides.server_error is None
    assert sides.client_received == MESSAGE


def test_a_client_certificate_signed_by_client_ca_is_let_in(tls_files: TlsFiles) -> None:
    context = server_context(tls_files.server_settings(client_ca=tls_files.ca))
    peer_names: list[object] = []

    def serve(connection: socket.socket) -> bytes:
        with context.wrap_socket(connection, server_side=True) as stream:
            peer_names.extend((stream.getpeercert() or {}).get("subjectAltName", ()))
            data = stream.recv(1024)
            stream.sendall(data)
            return data

    client = tls_files.client_settings(certfile=tls_files.client.cert, keyfile=tls_files.client.key)
    sides = converse(serve, tls_round_trip(client_context(client), "localhost"))
    assert sides.server_error is None and sides.client_error is None
    assert sides.client_received == MESSAGE
    assert peer_names == [("email", *tls_files.client.names)]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_missing_client_certificate_is_named_on_the_server(
    tls_files: TlsFiles, version: ssl.TLSVersion
) -> None:
    client = client_context(tls_files.client_settings())
    client.maximum_version = version
    sides = converse(
        tls_echo(server_context(tls_files.server_settings(client_ca=tls_files.ca))),
        tls_round_trip(client, "localhost", message=None),
    )
    assert described(sides.server_error) == (
        "the client sent no certificate, and this server requires one"
    )
    if version is ssl.TLSVersion.TLSv1_3:
        # TLS 1.3 clients finish the handshake first and learn it on their first read.
        assert described(sides.client_error) == (
            "the server requires a client certificate, and none was sent"
        )
    else:
        assert "handshake failure alert" in described(sides.client_error)


def test_a_client_certificate_from_another_ca_fails_verification_on_the_server(
    tls_files: TlsFiles,
) -> None:
    client = tls_files.client_settings(certfile=tls_files.client.cert, keyfile=tls_files.client.key)
    sides = converse(
        tls_echo(server_context(tls_files.server_settings(client_ca=tls_files.other_ca))),
        tls_round_trip(client_context(client), "localhost", message=None),
    )
    assert described(sides.server_error).startswith("certificate verify failed: ")


@pytest.mark.parametrize(
    ("data", "reason"),
    [(MESSAGE, "wrong version number"), (b"GET / HTTP/1.1\r\n\r\n", "http request")],
)
def test_plain_bytes_to_a_tls_server_did_not_speak_tls(
    tls_files: TlsFiles, data: bytes, reason: str
) -> None:
    sides = converse(tls_echo(server_context(tls_files.server_settings())), plain_send(data))
    assert described(sides.server_error) == f"the peer did not speak TLS ({reason})"
    assert sides.client_received in (b"", b"Re:")
    assert describe_tls_error(sides.client_error or ValueError()) is None


def test_a_tls_client_against_a_plain_reply_server_is_one_line(tls_files: TlsFiles) -> None:
    sides = converse(
        plain_reply, tls_round_trip(client_context(tls_files.client_settings()), "localhost")
    )
    assert sides.server_received.startswith(b"\x16\x03"), "the server read a ClientHello"
    assert described(sides.client_error) == "the peer did not speak TLS (wrong version number)"


def test_a_peer_closing_during_the_handshake_is_named(tls_files: TlsFiles) -> None:
    sides = converse(tls_echo(server_context(tls_files.server_settings())), hang_up)
    assert described(sides.server_error) == (
        "the peer closed the connection before the TLS exchange was complete (unexpected EOF)"
    )


def test_no_shared_tls_version_is_named(tls_files: TlsFiles) -> None:
    server = server_context(tls_files.server_settings())
    server.maximum_version = ssl.TLSVersion.TLSv1_2
    client = client_context(tls_files.client_settings())
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    sides = converse(tls_echo(server), tls_round_trip(client, "localhost"))
    for error in (sides.server_error, sides.client_error):
        assert described(error).startswith("no TLS version both sides accept (")


# Describing errors however they are wrapped


def a_verify_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify")
    error.reason = "CERTIFICATE_VERIFY_FAILED"
    error.verify_code = 10
    error.verify_message = "certificate has expired"
    return error


def raised_from(cause: BaseException, wrapper: BaseException) -> BaseException:
    """*wrapper* as raised with ``raise wrapper from cause``."""
    try:
        raise wrapper from cause
    except BaseException as exc:
        return exc


def test_describe_looks_through_trio_wrapping() -> None:
    broken = raised_from(a_verify_error(), trio.BrokenResourceError())
    assert describe_tls_error(broken) == "certificate verify failed: certificate has expired"


def test_describe_looks_through_context_and_groups() -> None:
    inner = trio.BrokenResourceError()
    inner.__context__ = a_verify_error()
    group = ExceptionGroup("nursery", [ValueError("other"), inner])
    assert describe_tls_error(group) == "certificate verify failed: certificate has expired"
    assert root_ssl_error(group) is inner.__context__


def test_describe_survives_a_cycle() -> None:
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__context__, second.__context__ = second, first
    assert describe_tls_error(first) is None


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(104, "Connection reset by peer"),
        ValueError("not TLS"),
        TimeoutError(),
        raised_from(ConnectionResetError(104, "reset"), trio.BrokenResourceError()),
    ],
    ids=["reset", "value", "timeout", "trio-reset"],
)
def test_describe_says_nothing_of_other_errors(error: BaseException) -> None:
    assert describe_tls_error(error) is None
    assert from_tls_error(error, "connect to 127.0.0.1:3100") is None


def test_from_tls_error_names_the_error_with_its_context() -> None:
    error = from_tls_error(
        raised_from(a_verify_error(), trio.BrokenResourceError()), "connect to localhost:3100"
    )
    assert isinstance(error, TlsError) and isinstance(error, NetworkError)
    assert (
        str(error)
        == "connect to localhost:3100: certificate verify failed: certificate has expired"
    )


def test_an_unknown_reason_still_reads_as_words() -> None:
    error = ssl.SSLError(1, "[SSL: BAD_DH_VALUE] bad dh value (_ssl.c:1006)")
    error.reason = "BAD_DH_VALUE"
    assert describe_tls_error(error) == "TLS failed: bad dh value"
    bare = ssl.SSLError(1, "[SSL] odd failure (_ssl.c:42)")
    assert describe_tls_error(bare) == "TLS failed: odd failure"


@given(reason=st.text(), message=st.text(), code=st.integers(-5, 100))
def test_a_description_is_always_one_printable_line(reason: str, message: str, code: int) -> None:
    verify = ssl.SSLCertVerificationError(1, message)
    verify.reason, verify.verify_code, verify.verify_message = reason, code, message
    other = ssl.SSLError(1, message)
    other.reason = reason
    for error in (verify, other, ssl.SSLError(message), ssl.SSLEOFError(8, message)):
        assert_one_line(describe_tls_error(error))


def test_the_tls_module_does_not_import_trio() -> None:
    tree = ast.parse(Path(tls_module.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "trio"}
