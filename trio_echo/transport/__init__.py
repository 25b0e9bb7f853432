"""How bytes reach a connection: listener specs, sockets, TLS, UDP policy.

Transports are not protocols: every transport runs every protocol through
the same codec and the same connection lifecycle. What both drivers need to
know about a transport (how its spec is written, how its sockets are bound,
how TLS is set up, which datagrams a UDP server refuses) lives here once,
in plain ``socket`` and ``ssl`` terms; each driver puts it under its own
I/O.
"""
