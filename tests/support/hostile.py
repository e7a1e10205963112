"""Hostile traffic against the bot's real HTTP server, shared by tests/adversarial and
bench/hostile.py: the server to attack and an idle-connection flood.

* ``http_stack`` runs the bot (``SandboxStack``: the real ``HttpServer`` with its front
  door, the Slack emulator, a fresh fake platform, no scheduler) for the front-door and
  flood tests and the benchmark.
* ``idle_flood`` opens idle connections to a port (some with half a request line, then
  nothing), after raising this process's descriptor limit (``raise_fd_limit``: both ends
  of every connection live here), and closes them at the end.
* ``server_kept_open`` tells whether the server still holds one of them open.
* ``held_by_server`` counts the connections a local server still holds (read from
  ``/proc/net/tcp``), and ``wait_released`` polls it down to zero: what to wait for after
  closing connections, instead of sleeping and hoping the server has dropped them.
"""

from __future__ import annotations

import contextlib
import resource
import socket
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.waiting import reached

if TYPE_CHECKING:
    from sandbox.stack import SandboxStack

__all__ = ["HALF_REQUEST", "held_by_server", "http_stack", "idle_flood", "raise_fd_limit",
           "server_kept_open", "wait_released"]

HALF_REQUEST = b"POST /slack/events HTTP/1.1\r\nHost: "
# TCP states (include/net/tcp_states.h) in which the server's socket is still open: the
# connection is up, not yet accepted, or closed by the client and not yet by the server.
_HELD_STATES = {"01", "03", "08"}  # ESTABLISHED, SYN_RECV, CLOSE_WAIT


@contextlib.contextmanager
def http_stack(database_url: str, postmortem_dir: str | Path, *,
               source: str = "<config>") -> Iterator[SandboxStack]:
    """The bot's HTTP server on the sandbox configuration and a fresh fake platform."""
    from sandbox.config import parse_sandbox_config, sandbox_config_dict
    from sandbox.fake_platform import FakePlatform
    from sandbox.stack import SandboxStack

    config = parse_sandbox_config(sandbox_config_dict(postmortem_dir=str(postmortem_dir)),
                                  source=source)
    with SandboxStack(config=config, database_url=database_url,
                      platforms={"fake": FakePlatform()}, scheduler=False) as running:
        yield running


def raise_fd_limit(wanted: int) -> None:
    """Raise the soft limit on open descriptors to ``wanted`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


@contextlib.contextmanager
def idle_flood(port: int, count: int, *, partial: int, fd_limit: int | None = None,
               host: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    """``count`` idle connections to ``host:port``, the first ``partial`` of them having
    sent half a request line; all closed when the block ends. ``fd_limit``: descriptors
    to allow first (default four per connection)."""
    raise_fd_limit(fd_limit if fd_limit is not None else 4 * count)
    opened: list[socket.socket] = []
    try:
        for i in range(count):
            sock = socket.create_connection((host, port), timeout=5)
            opened.append(sock)
            if i < partial:
                sock.sendall(HALF_REQUEST)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def server_kept_open(sock: socket.socket) -> bool:
    """Whether the server still holds the connection of ``sock`` (no FIN, no reset)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read and no FIN: the server still holds it
    except OSError:
        return False


def held_by_server(port: int, peers: Collection[int] | None = None) -> int:
    """How many connections the local server on ``port`` still holds open (from any
    client port, or only from the client ports ``peers``)."""
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if int(local.rsplit(":", 1)[1], 16) != port or state not in _HELD_STATES:
                continue
            if peers is None or int(remote.rsplit(":", 1)[1], 16) in peers:
                held += 1
    return held


def wait_released(port: int, peers: Collection[int] | None = None, *,
                  timeout: float = 10.0) -> bool:
    """Poll until the server on ``port`` holds none of those connections; False if it
    still does after ``timeout`` seconds."""
    return reached(lambda: held_by_server(port, peers) == 0, timeout, 0.02)
