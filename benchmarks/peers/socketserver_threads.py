"""stdlib ``socketserver.ThreadingTCPServer``: a thread per connection, blocking sockets.

The peer of trio-echo's blocking driver.
"""

from __future__ import annotations

import signal
import socketserver
import threading
from types import FrameType

from .common import (
    BACKLOG,
    HOST,
    RECEIVE_SIZE,
    announce,
    answer_function,
    main_guard,
    parse_args,
    raise_open_files_limit,
    set_nodelay,
)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    request_queue_size = BACKLOG


def serve(port: int, protocol: str) -> None:
    answer = answer_function(protocol)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock = self.request
            set_nodelay(sock)
            try:
                while True:
                    data = sock.recv(RECEIVE_SIZE)
                    if not data:
                        return
                    sock.sendall(answer(data))
            except ConnectionError:
                return

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    with Server((HOST, port), Handler) as server:
        announce(protocol, "socketserver threads", server.server_address[1])
        acceptor = threading.Thread(target=server.serve_forever, daemon=True)
        acceptor.start()
        while not stop.wait(1.0):
            pass
        server.shutdown()


def main() -> None:
    args = parse_args(__doc__ or "")
    raise_open_files_limit()
    main_guard(lambda: serve(args.port, args.protocol))


if __name__ == "__main__":
    main()
