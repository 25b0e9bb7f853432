"""What each of a server's listeners serves, decided once for both drivers.

A server is configured with listener specs (``tcp://``, ``udp://``,
``tls://``, ``unix:``), each speaking its own protocol. Before anything is
bound, :func:`plan_listeners` turns the configuration into one
:class:`ListenerPlan` per spec: the codec its connections get and, for TLS,
the ``ssl.SSLContext`` its handshakes use. A bad certificate therefore fails
when the server is built, in one line, not on the first client. Each driver
then binds the plan's spec under its own I/O.
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Callable

import attrs

from .address import Address
from .codec import Identity, Opening, ServerCodec, server_codec_factory
from .codec.whoami import NAMELESS
from .config import ServerConfig, WireProtocol
from .faults.spec import FaultSpec
from .proxy_gate import ProxyGate, parse_networks
from .transport.spec import ListenSpec, Transport
from .transport.tls import server_context


@attrs.frozen
class ListenerPlan:
    """One listener's spec (protocol decided), its connections' codec and its TLS context."""

    spec: ListenSpec
    codec_factory: Callable[[], ServerCodec]
    tls: ssl.SSLContext | None = None
    """Set for ``tls://``: every accepted connection handshakes with it first."""
    handshake_timeout: float = math.inf
    """Seconds a TLS handshake may take before the connection fails."""
    reading_limit: float = math.inf
    """Seconds from accept within which the conversation must be finished reading.

    The line timeout for ``greeting``, whose one read is a line; unlimited
    for ``reply`` and ``echo``, which read for as long as the peer talks.
    """
    faults: FaultSpec | None = None
    """The faults its connections may get: the spec's ``?fault=``, else the server's."""
    proxy: ProxyGate | None = None
    """Set for a ``?proxy=`` listener: every connection must open with a PROXY header."""
    identity: Identity = NAMELESS
    """Who the server is, for ``whoami`` answers (its codecs hold it too)."""

    def opening(self, peer: Address, via: Address | None) -> Opening:
        """What a server-speaks-first codec is told of a connection from *peer*.

        *via* is the proxy that sent a PROXY header for *peer*, if any: then
        the server saw *via*, and *peer* is the original client.
        """
        if via is None:
            return Opening(str(self.spec), str(peer))
        return Opening(str(self.spec), str(via), str(peer))

    def bound_as(self, spec: ListenSpec) -> ListenerPlan:
        """This plan for one socket its spec was bound to (the real address and port)."""
        return attrs.evolve(self, spec=attrs.evolve(spec, protocol=self.spec.protocol))


def plan_listeners(
    config: ServerConfig, codec_factory: Callable[[], ServerCodec] | None = None
) -> list[ListenerPlan]:
    """A plan for every listener of *config*; *codec_factory*, if given, serves them all."""
    context = server_context(config.tls) if config.tls is not None else None
    handshake = math.inf
    if config.tls is not None and config.tls.handshake_timeout is not None:
        handshake = config.tls.handshake_timeout
    line = math.inf if config.line_timeout is None else config.line_timeout
    plans = []
    identity = Identity(config.name, os.getpid())
    for spec in config.listeners():
        assert spec.protocol is not None  # listeners() decides every protocol
        factory = codec_factory or server_codec_factory(
            spec.protocol, max_line=config.max_line, identity=identity
        )
        limit = line if spec.protocol is WireProtocol.GREETING else math.inf
        faults = spec.fault if spec.fault is not None else config.faults
        if spec.transport is Transport.TLS:
            plan = ListenerPlan(spec, factory, context, handshake, limit, faults or None)
        else:
            plan = ListenerPlan(spec, factory, reading_limit=limit, faults=faults or None)
        plan = attrs.evolve(plan, identity=identity)
        if spec.proxy is not None:
            trusted = parse_networks(config.proxy_trusted)
            plan = attrs.evolve(plan, proxy=ProxyGate(spec.proxy, trusted, config.proxy_timeout))
        plans.append(plan)
    return plans
