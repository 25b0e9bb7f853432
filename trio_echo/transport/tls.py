"""TLS for both drivers: settings, ``ssl.SSLContext`` builders, and one line per failure.

Everything here is plain :mod:`ssl`. The Trio driver puts the contexts under
``trio.SSLStream`` over any stream; the blocking driver under
``SSLContext.wrap_socket``. Either way the same settings build the same
context, and the same :func:`describe_tls_error` turns what went wrong into
one line a user can act on ("certificate has expired", "the peer did not
speak TLS") instead of an OpenSSL traceback.

A bad setting fails in two steps, both as :class:`~trio_echo.errors.ConfigError`
naming the field: building the settings checks that each file exists and can
be read; building the context checks what the files hold (a certificate, a
matching unencrypted key), since only OpenSSL can tell.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
import sys
from typing import Any

import attrs

from ..errors import ConfigError, TlsError
from ..escape import escape_text
from ..os_errors import describe_os_error, find_cause
from ..validation import check, flag, positive_seconds

if sys.version_info < (3, 11):  # pragma: no cover
    pass

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
"""The oldest TLS either side accepts: TLS 1.0 and 1.1 are deprecated (RFC 8996)."""

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a TLS handshake may take before the connection is dropped.

Production servers differ: nginx's ``ssl_handshake_timeout`` is 60 s, asyncio
waits 60 s (raised from 10 s in Python 3.7 for slow embedded peers), Node.js
120 s, HAProxy applies its ``timeout client`` unless ``timeout client-hs`` is
set, while ASP.NET Kestrel and Go's default HTTP client allow 10 s. A
handshake is two round trips and some arithmetic, with no person in the loop
(unlike the 60 s ``idle_timeout``, which waits for someone typing), so 10 s is
ample even over a congested link, and it keeps a client that connects and
never finishes the handshake from holding one of the server's slots for a
minute. Raise it for peers on very slow hardware.
"""


def _path_text(value: str | os.PathLike[str]) -> str:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _optional_path_text(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else _path_text(value)


def _readable_file(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Fail unless *value* names a file this process can open for reading."""
    if value is None and attribute.default is None:
        return
    if not isinstance(value, str) or value == "":
        raise ConfigError(
            f"{attribute.name} must be a file path, not {value!r}", field=attribute.name
        )
    try:
        with open(value, "rb"):
            pass
    except FileNotFoundError:
        raise ConfigError(
            f"{attribute.name} {value!r} does not exist", field=attribute.name
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{attribute.name} {value!r} is a directory, not a file", field=attribute.name
        ) from None
    except PermissionError:
        raise ConfigError(
            f"{attribute.name} {value!r} is not readable (permission denied)", field=attribute.name
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{attribute.name} {value!r} cannot be read ({describe_os_error(exc)})",
            field=attribute.name,
        ) from None


_handshake_timeout = positive_seconds
_host_name = check(
    lambda v: v is None or (isinstance(v, str) and v != "" and v.isprintable()), "a host name"
)


@attrs.frozen(kw_only=True)
class TlsServerSettings:
    """What a TLS listener presents, whom it lets in, and how long a handshake may take."""

    certfile: str = attrs.field(converter=_path_text, validator=_readable_file)
    """PEM file: the server's certificate, then any intermediates (and the key, without keyfile)."""
    keyfile: str | None = attrs.field(
        default=None, converter=_optional_path_text, validator=_readable_file
    )
    """PEM file with the private key; None when certfile holds it too."""
    client_ca: str | None = attrs.field(
        default=None, converter=_optional_path_text, validator=_readable_file
    )
    """PEM file of CAs; when set, every client must present a certificate one of them signed."""
    handshake_timeout: float | None = attrs.field(
        default=DEFAULT_HANDSHAKE_TIMEOUT, validator=_handshake_timeout
    )
    """Drop a client whose handshake takes longer than this; None waits forever."""


@attrs.frozen(kw_only=True)
class TlsClientSettings:
    """Whom a TLS client trusts, what name it checks, and what it presents itself."""

    cafile: str | None = attrs.field(
        default=None, converter=_optional_path_text, validator=_readable_file
    )
    """PEM file of CAs to trust; None trusts the system's store."""
    insecure: bool = attrs.field(default=False, validator=flag)
    """Skip certificate and host name verification: only when asked, never by default."""
    server_hostname: str | None = attrs.field(default=None, validator=_host_name)
    """Name sent as SNI and checked against the certificate; None means the target host."""
    certfile: str | None = attrs.field(
        default=None, converter=_optional_path_text, validator=_readable_file
    )
    """Client certificate to present (PEM, with the key unless keyfile is given)."""
    keyfile: str | None = attrs.field(
        default=None, converter=_optional_path_text, validator=_readable_file
    )
    """Private key of the client certificate; None when certfile holds it too."""
    handshake_timeout: float | None = attrs.field(
        default=DEFAULT_HANDSHAKE_TIMEOUT, validator=_handshake_timeout
    )
    """Give up on a handshake that takes longer than this; None waits forever."""

    def __attrs_post_init__(self) -> None:
        if self.keyfile is not None and self.certfile is None:
            raise ConfigError("keyfile needs certfile: a key alone is no client certificate")
        if self.insecure and self.cafile is not None:
            raise ConfigError("insecure skips verification, so cafile would be ignored: give one")

    def hostname_for(self, host: str) -> str:
        """The name to send as SNI and verify the certificate against when connecting to *host*."""
        return host if self.server_hostname is None else self.server_hostname


def server_context(settings: TlsServerSettings) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 or later, the settings' chain, client certificates if asked.

    Starts from ``PROTOCOL_TLS_SERVER``, whose defaults are the secure ones
    (forward-secret AEAD ciphers only, no compression, server cipher
    preference), and turns off renegotiation, a cheap way for a client to make
    the server work. It does not start from ``create_default_context``, which
    would trust the system's CAs for client certificates; with ``client_ca``
    only those CAs are trusted.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    _load_chain(context, settings.certfile, settings.keyfile)
    if settings.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        _load_trust(context, "client_ca", settings.client_ca)
    return context


def client_context(settings: TlsClientSettings) -> ssl.SSLContext:
    """A client-side context with ``ssl.create_default_context`` semantics.

    The certificate and the host name are verified against *cafile*, or the
    system's store without it; ``insecure`` turns both checks off. The name
    checked is the one passed as ``server_hostname`` when wrapping, which
    :meth:`TlsClientSettings.hostname_for` gives.
    """
    if settings.cafile is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        context = _context_trusting(settings.cafile)
    context.minimum_version = MINIMUM_VERSION
    if settings.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.certfile is not None:
        _load_chain(context, settings.certfile, settings.keyfile)
    return context


class _EncryptedKey(Exception):
    """The private key asks for a passphrase; raised instead of prompting on the terminal."""


def _refuse_passphrase() -> str:
    raise _EncryptedKey


def _load_chain(context: ssl.SSLContext, certfile: str, keyfile: str | None) -> None:
    """Load a certificate chain and its key, or say in one line which file is wrong."""
    key_field, key_path = ("certfile", certfile) if keyfile is None else ("keyfile", keyfile)
    try:
        context.load_cert_chain(certfile, keyfile, password=_refuse_passphrase)
    except _EncryptedKey:
        raise ConfigError(
            f"{key_field} {key_path!r} holds an encrypted private key; give an unencrypted one"
        ) from None
    except ssl.SSLError as exc:
        raise _chain_error(certfile, keyfile, exc) from None
    except OSError as exc:
        raise ConfigError(
            f"certfile {certfile!r} cannot be read ({describe_os_error(exc)})"
        ) from None


def _chain_error(certfile: str, keyfile: str | None, exc: ssl.SSLError) -> ConfigError:
    """Name the file behind a failed ``load_cert_chain``; OpenSSL only says "PEM lib"."""
    if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
        if keyfile is None:
            return ConfigError(
                f"certfile {certfile!r} holds a key that does not match its certificate"
            )
        return ConfigError(f"keyfile {keyfile!r} does not match certfile {certfile!r}")
    if not _holds_certificate(certfile):
        return ConfigError(f"certfile {certfile!r} holds no PEM certificate")
    if keyfile is None:
        return ConfigError(f"certfile {certfile!r} holds no PEM private key; give keyfile")
    return ConfigError(f"keyfile {keyfile!r} holds no PEM private key")


def _holds_certificate(path: str) -> bool:
    """Whether OpenSSL finds at least one well-formed certificate in *path*."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError):
        return False
    return True


def _context_trusting(cafile: str) -> ssl.SSLContext:
    """``create_default_context`` trusting only the CAs in *cafile*, its errors in one line."""
    try:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except ssl.SSLError:
        raise ConfigError(f"cafile {cafile!r} holds no PEM certificate") from None
    except OSError as exc:
        raise ConfigError(f"cafile {cafile!r} cannot be read ({describe_os_error(exc)})") from None


def _load_trust(context: ssl.SSLContext, field: str, path: str) -> None:
    """Trust the CAs in *path*, or say in one line that it holds none."""
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise ConfigError(f"{field} {path!r} holds no PEM certificate") from None
    except OSError as exc:
        raise ConfigError(f"{field} {path!r} cannot be read ({describe_os_error(exc)})") from None


def root_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind *exc*: itself, a cause or context, or inside a group.

    Trio raises ``BrokenResourceError`` from the ``SSLError`` of a failed
    handshake; nurseries wrap that in exception groups.
    """
    return find_cause(exc, ssl.SSLError)


_NOT_TLS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "HTTP_REQUEST",
        "HTTPS_PROXY_REQUEST",
        "UNKNOWN_PROTOCOL",
        "PACKET_LENGTH_TOO_LONG",
    }
)
"""Reasons OpenSSL gives when the first bytes are not a TLS record at all."""

_NO_SHARED_VERSION = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "VERSION_TOO_LOW",
        "VERSION_TOO_HIGH",
        "WRONG_SSL_VERSION",
    }
)

_CERTIFICATE_REJECTED = frozenset(
    {
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    }
)
"""Alerts a peer sends when it refused the certificate this side presented."""

_UNTRUSTED_ISSUER_CODES = frozenset({2, 18, 19, 20, 21})
"""X509_V_ERR codes meaning no trusted CA signed the certificate (a private CA, or self-signed)."""

_ALERT_PREFIX = re.compile(r"^(?:SSLV3|TLSV1|TLSV13)_ALERT_")
_OPENSSL_DECORATION = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")


def describe_tls_error(exc: BaseException) -> str | None:
    """One printable line saying what went wrong in TLS, or None if *exc* is no TLS error.

    Looks through wrapping (see :func:`root_ssl_error`), so a driver can pass
    whatever its I/O raised. The line has no context of its own ("connect to
    ...:"), as in :func:`~trio_echo.os_errors.describe_os_error`; use
    :func:`from_tls_error` for a named error with one.
    """
    error = root_ssl_error(exc)
    if error is None:
        return None
    return escape_text(_describe(error))


def from_tls_error(exc: BaseException, context: str) -> TlsError | None:
    """The :class:`~trio_echo.errors.TlsError` *exc* stands for, or None if it is no TLS error.

    *context* says what was being attempted, e.g. ``"TLS handshake with
    127.0.0.1:3100"``. Call it before ``from_os_error``, which would read an
    OpenSSL code as an errno.
    """
    description = describe_tls_error(exc)
    if description is None:
        return None
    return TlsError(f"{context}: {description}")


def _describe(error: ssl.SSLError) -> str:
    reason: str = getattr(error, "reason", None) or ""
    words = _reason_words(error, reason)
    if isinstance(error, ssl.SSLCertVerificationError):
        return _describe_verify_failure(error, words)
    if isinstance(error, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        return (
            "the peer closed the connection before the TLS exchange was complete (unexpected EOF)"
        )
    if isinstance(error, ssl.SSLZeroReturnError):
        return "the peer closed the TLS session"
    if reason in _NOT_TLS:
        return f"the peer did not speak TLS ({words})"
    if reason in _NO_SHARED_VERSION:
        return f"no TLS version both sides accept ({words}); TLS 1.2 or later is required"
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "the client sent no certificate, and this server requires one"
    if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return "the server requires a client certificate, and none was sent"
    if reason == "NO_SHARED_CIPHER":
        return "no TLS cipher both sides accept (no shared cipher)"
    if reason in _CERTIFICATE_REJECTED:
        return f"the peer rejected this side's certificate ({words} alert)"
    if reason == "SSLV3_ALERT_HANDSHAKE_FAILURE":
        return (
            "the peer refused the TLS handshake (handshake failure alert:"
            " it may require a client certificate, or share no cipher)"
        )
    if _ALERT_PREFIX.match(reason):
        return f"the peer ended the TLS exchange with an alert ({words})"
    return f"TLS failed: {words}"


def _describe_verify_failure(error: ssl.SSLCertVerificationError, words: str) -> str:
    message = getattr(error, "verify_message", None) or words
    message = message.rstrip(".")
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]
    if getattr(error, "verify_code", None) in _UNTRUSTED_ISSUER_CODES:
        message += " (no trusted CA signed it)"
    return f"certificate verify failed: {message}"


def _reason_words(error: ssl.SSLError, reason: str) -> str:
    """OpenSSL's reason in lower-case words, or its message without ``[LIB]`` and ``(_ssl.c:N)``."""
    if reason:
        return _ALERT_PREFIX.sub("", reason).lower().replace("_", " ")
    text = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], str) else str(error)
    return _OPENSSL_DECORATION.sub("", text) or type(error).__name__


@functools.lru_cache(maxsize=8)
def shared_client_context(settings: TlsClientSettings) -> ssl.SSLContext:
    """One :func:`client_context` per settings, shared by every session that uses them.

    Building a context loads the trust store, which costs milliseconds; a
    client running a thousand sessions builds it once.
    """
    return client_context(settings)
