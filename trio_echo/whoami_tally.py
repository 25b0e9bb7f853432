"""What many ``whoami`` sessions say together: which servers answered, whom they saw.

``trio-echo client --protocol whoami --connections N`` opens N connections
through whatever stands between it and the servers (a load balancer, a
Kubernetes service, a proxy) and counts the answers: each distinct server
(name and process), each client address the servers saw, and each original
address a PROXY header gave them. Distribution, affinity and
source-address preservation can be read off those counts. Everything shown
came from a server, so it is escaped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .codec.whoami import Answer, parse_answer
from .escape import escape_text
from .session import SessionResult


class WhoamiTally:
    """Counts over the whoami answers of one run."""

    def __init__(self) -> None:
        self.servers: Counter[tuple[str, int]] = Counter()
        """Answers by server name and process id."""
        self.clients: Counter[str] = Counter()
        """Answers by the client host a server saw (for a ``?proxy=`` listener, the proxy's)."""
        self.originals: Counter[str] = Counter()
        """Answers by the original client host a PROXY header gave (those with one only)."""
        self.answers = 0

    def add(self, answer: Answer) -> None:
        """Count one answer."""
        self.answers += 1
        self.servers[answer.server, answer.pid] += 1
        self.clients[host_of(answer.client)] += 1
        if answer.original is not None:
            self.originals[host_of(answer.original)] += 1

    def add_results(self, results: Iterable[SessionResult]) -> None:
        """Count the answer of every session in *results* that got one."""
        for result in results:
            for exchange in result.exchanges:
                self.add(parse_answer(exchange.reply))

    def fields(self) -> dict[str, object]:
        """The same counts for ``--json``: answers, then servers, clients and originals."""
        return {
            "answers": self.answers,
            "servers": [
                {"server": name, "pid": pid, "answers": count}
                for (name, pid), count in self.servers.most_common()
            ],
            "clients": dict(self.clients.most_common()),
            "originals": dict(self.originals.most_common()),
        }

    def lines(self) -> list[str]:
        """The summary: a headline, then one line per server, client and original address."""
        servers = len(self.servers)
        lines = [
            f"{self.answers} whoami answer{'' if self.answers == 1 else 's'} from "
            f"{servers} server{'' if servers == 1 else 's'}"
        ]
        for (name, pid), count in self.servers.most_common():
            lines.append(f"  server {escape_text(name)} pid {pid}: {count}")
        for address, count in self.clients.most_common():
            lines.append(f"  client seen as {escape_text(address)}: {count}")
        for address, count in self.originals.most_common():
            lines.append(f"  original client {escape_text(address)}: {count}")
        return lines


def host_of(address: str) -> str:
    """*address* without its port (``[::1]:5000`` gives ``::1``); a unix address unchanged.

    Every connection has its own port, so it is the host that says whether
    the servers saw the client, a proxy, or a translated address.
    """
    if address.startswith("unix:"):
        return address
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit():
        return address
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host
