"""Socket Mode: ``apps.connections.open`` and the websocket Slack pushes envelopes over.

An app with an app-level token (``xapp-…``) asks ``apps.connections.open`` for a one-time
URL, opens a websocket to it, gets a ``hello``, then receives every command, click and
event as an envelope it must acknowledge with ``{"envelope_id": …}`` (plus a ``payload``
where the envelope ``accepts_response_payload``). Slack refreshes connections by sending
``disconnect`` (``warning`` / ``refresh_requested``); the app opens a new URL and Slack
closes the old socket. Sources:
- https://api.slack.com/apis/connections/socket-implement (hello, envelopes, acks,
  disconnect reasons, "connections refresh regularly")
- https://api.slack.com/methods/apps.connections.open (app-level token only; ``url``)
- slack_sdk/socket_mode/builtin/connection.py (the bot's client): the handshake it sends and
  the ``Sec-WebSocket-Accept`` it validates, its ``"<session id>:<time>"`` pings whose pongs
  it needs within 4 ping intervals or it reconnects; client.py ``process_message``: a
  ``disconnect`` message makes it call ``connect_to_new_endpoint(force=True)``;
  request.py/response.py: the envelope and ack shapes.
- RFC 6455 §4.2.2 (the 101 answer), §5.1-5.5 (framing: client frames are masked, server
  frames are not; a ping is answered by a pong with the same application data; close).

The websocket runs in the emulator's own HTTP server (GET ``/link/?ticket=…``): the
request's thread owns the socket and reads it; anything may send under the connection's
lock. Retries: Slack retries Events API deliveries that are not acknowledged
(https://api.slack.com/apis/events-api#retries: ``retry_attempt``/``retry_reason``); a test
asks for a redelivery of any unacked envelope with ``redeliver`` (as the HTTP driver's
``resend`` does) and can lose acks in transit with ``lose_acks``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import struct
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from sandbox.slack.api import ApiError

# RFC 6455 §1.3: the GUID the server appends to Sec-WebSocket-Key.
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DEFAULT_APP_TOKEN = "xapp-1-A0ROLLBACK-1-sandbox"
# Slack's ack deadline for every envelope (socket-implement: "within 3 seconds").
ACK_TIMEOUT = 3.0
HOST = "applink-sandbox-1"  # debug_info.host: which Slack front end serves the socket


class Upgradable(Protocol):
    """What the hub needs of the HTTP request that asks for the upgrade (wire.py's handler)."""

    headers: Any
    connection: socket.socket
    rfile: BinaryIO

    def send_response(self, code: int, message: str | None = None) -> None: ...
    def send_header(self, keyword: str, value: str) -> None: ...
    def end_headers(self) -> None: ...


class ConnectionClosed(Exception):
    pass


class Connection:
    """One accepted websocket: frames in (masked) and out (unmasked) on a raw socket."""

    def __init__(self, sock: socket.socket, reader: BinaryIO, number: int) -> None:
        self.sock = sock
        # The request's buffered reader: it may already hold bytes read past the headers.
        self.reader = reader
        self.number = number
        self.lock = threading.Lock()
        self.open = True
        self.retiring = False  # told to reconnect (disconnect sent); closed once replaced

    def send_frame(self, opcode: int, data: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(data)
        if n < 126:
            header += bytes([n])
        elif n < 1 << 16:
            header += bytes([126]) + struct.pack("!H", n)
        else:
            header += bytes([127]) + struct.pack("!Q", n)
        with self.lock:
            if not self.open:
                raise ConnectionClosed()
            try:
                self.sock.sendall(header + data)
            except OSError:
                self.open = False
                raise ConnectionClosed() from None

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(OP_TEXT, json.dumps(message).encode())

    def _read(self, n: int) -> bytes:
        data = self.reader.read(n)  # blocks for n bytes; fewer only at end of stream
        if len(data) < n:
            raise ConnectionClosed()
        return data

    def read_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        if not b1 & 0x80:
            # RFC 6455 §5.1: a server MUST close the connection on an unmasked client frame.
            self.close(1002, "unmasked frame")
            raise ConnectionClosed()
        mask = self._read(4)
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._read(length)))
        return bool(b0 & 0x80), b0 & 0x0F, data

    def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())
        except ConnectionClosed:
            pass
        with self.lock:
            self.open = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@dataclass
class Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    attempt: int = 0
    acked: threading.Event = field(default_factory=threading.Event)
    response: dict[str, Any] | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # each message as sent
    via: list[int] = field(default_factory=list)  # the connection number of each delivery


class SocketModeHub:
    """The Slack side of Socket Mode for one app: tickets, connections, envelopes, acks."""

    def __init__(self, *, app_id: str, app_token: str = DEFAULT_APP_TOKEN,
                 ack_timeout: float = ACK_TIMEOUT) -> None:
        self.app_id = app_id
        self.app_token = app_token
        self.ack_timeout = ack_timeout
        self.root_url = ""  # set by the emulator once it knows its port
        self._cond = threading.Condition()
        self._tickets: set[str] = set()
        self.connections: list[Connection] = []
        self.opened = 0  # apps.connections.open calls answered
        self.envelopes: dict[str, Envelope] = {}
        self.acks: list[dict[str, Any]] = []  # every ack received, lost ones included
        self.control: list[tuple[int, dict[str, Any]]] = []  # (connection, hello/disconnect)
        self._lose_acks = 0

    # ------------------------------------------------------------ apps.connections.open
    def connections_open(self, token: str | None) -> dict[str, Any]:
        """https://api.slack.com/methods/apps.connections.open: only an app-level token;
        a bot or user token is ``not_allowed_token_type``."""
        if not token:
            raise ApiError("not_authed")
        if token.startswith(("xoxb-", "xoxp-")):
            raise ApiError("not_allowed_token_type")
        if token != self.app_token:
            raise ApiError("invalid_auth")
        ticket = secrets.token_hex(16)
        with self._cond:
            self._tickets.add(ticket)
            self.opened += 1
        # Slack answers wss://wss-primary.slack.com/link/?ticket=…&app_id=…; ours is local.
        ws_root = self.root_url.replace("http://", "ws://", 1)
        return {"ok": True, "url": f"{ws_root}link/?ticket={ticket}&app_id={self.app_id}"}

    # ------------------------------------------------------------------- the socket
    def accept(self, request: Upgradable, ticket: str | None) -> None:
        """Upgrade ``request`` (GET /link/) and serve it until it closes (its own thread)."""
        key = request.headers.get("Sec-WebSocket-Key")
        with self._cond:
            valid = ticket in self._tickets
            self._tickets.discard(ticket or "")  # a ticket opens one connection only
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        # A used or unknown ticket is refused before the upgrade (Slack documents the URL as
        # single-use, not its exact answer: any non-101 makes slack_sdk's connect() fail).
        if not (valid and key and upgrade):
            request.send_response(400 if valid else 401)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        request.send_response(101, "Switching Protocols")
        request.send_header("Upgrade", "websocket")
        request.send_header("Connection", "Upgrade")
        request.send_header("Sec-WebSocket-Accept", accept)
        request.end_headers()
        with self._cond:
            conn = Connection(request.connection, request.rfile, len(self.connections) + 1)
            self.connections.append(conn)
            live = [c for c in self.connections if c.open and not c.retiring]
            replaced = [c for c in self.connections if c.open and c.retiring]
            self._cond.notify_all()
        hello = {"type": "hello", "num_connections": len(live),
                 "debug_info": {"host": HOST, "build_number": 1,
                                "approximate_connection_time": 18060},
                 "connection_info": {"app_id": self.app_id}}
        self.control.append((conn.number, hello))
        conn.send_json(hello)
        for old in replaced:  # the refreshed connection is closed once its successor is up
            old.close(1000, "refreshed")
        self._serve(conn)

    def _serve(self, conn: Connection) -> None:
        parts: list[bytes] = []
        try:
            while conn.open:
                fin, opcode, data = conn.read_frame()
                if opcode == OP_PING:
                    conn.send_frame(OP_PONG, data)  # RFC 6455 §5.5.3: same application data
                elif opcode == OP_CLOSE:
                    conn.close(1000)
                    break
                elif opcode in (OP_TEXT, OP_CONT):
                    parts.append(data)
                    if fin:
                        self._on_text(b"".join(parts).decode("utf-8"))
                        parts = []
        except (ConnectionClosed, OSError):
            pass
        finally:
            with self._cond:
                conn.open = False
                self._cond.notify_all()

    def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            return
        if not isinstance(message, dict):
            return
        with self._cond:
            self.acks.append(message)
            if self._lose_acks:
                self._lose_acks -= 1
                return
            envelope = self.envelopes.get(str(message.get("envelope_id")))
            if envelope is None or envelope.acked.is_set():
                return
            payload = message.get("payload")
            envelope.response = payload if isinstance(payload, dict) else None
            envelope.acked.set()
            self._cond.notify_all()

    # ------------------------------------------------------------------ deliveries
    def connected(self, timeout: float = 10.0) -> Connection:
        """The connection Slack would send on: the newest open one not being refreshed."""
        def pick() -> Connection | None:
            live = [c for c in self.connections if c.open and not c.retiring]
            return live[-1] if live else None

        with self._cond:
            if not self._cond.wait_for(lambda: pick() is not None, timeout=timeout):
                raise TimeoutError("no Socket Mode connection is open")
            found = pick()
            assert found is not None
            return found

    def deliver(self, kind: str, payload: dict[str, Any], *,
                accepts_response_payload: bool) -> Envelope:
        """Send a new envelope and wait up to the ack deadline for its ack."""
        envelope = Envelope(str(uuid.uuid4()), kind, payload, accepts_response_payload)
        with self._cond:
            self.envelopes[envelope.envelope_id] = envelope
        self._send(envelope, retry_reason="")
        return envelope

    def redeliver(self, envelope_id: str, *, retry_reason: str = "timeout") -> Envelope:
        """Slack's retry of an unacked envelope: same id and payload, ``retry_attempt`` + 1."""
        envelope = self.envelopes[envelope_id]
        if envelope.acked.is_set():
            raise ValueError(f"envelope {envelope_id} was acknowledged; Slack does not retry it")
        envelope.attempt += 1
        self._send(envelope, retry_reason=retry_reason)
        return envelope

    def _send(self, envelope: Envelope, *, retry_reason: str) -> None:
        message = {"envelope_id": envelope.envelope_id, "type": envelope.type,
                   "payload": envelope.payload,
                   "accepts_response_payload": envelope.accepts_response_payload,
                   "retry_attempt": envelope.attempt, "retry_reason": retry_reason}
        envelope.deliveries.append(message)
        conn = self.connected()
        envelope.via.append(conn.number)
        try:
            conn.send_json(message)
        except ConnectionClosed:
            pass  # lost with its socket; unacked, so a redelivery may follow
        envelope.acked.wait(self.ack_timeout)

    def lose_acks(self, count: int = 1) -> None:
        """The next ``count`` acks are lost in transit (received, never applied)."""
        with self._cond:
            self._lose_acks += count

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the open connections to reconnect (``warning`` or ``refresh_requested``);
        each is closed once a new connection arrives (``link_disabled`` closes at once).
        Slack closes a warned socket about 10 seconds later whether or not the app has
        reconnected; closing on the successor's arrival keeps tests free of that wait."""
        with self._cond:
            targets = [c for c in self.connections if c.open and not c.retiring]
            for conn in targets:
                conn.retiring = True
        for conn in targets:
            message = {"type": "disconnect", "reason": reason, "debug_info": {"host": HOST}}
            self.control.append((conn.number, message))
            try:
                conn.send_json(message)
            except ConnectionClosed:
                continue
            if reason == "link_disabled":
                conn.close(1000, reason)

    def wait_connections(self, count: int, timeout: float = 15.0) -> None:
        """Until ``count`` connections have been accepted in all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.connections) >= count, timeout=timeout):
                raise TimeoutError(f"{len(self.connections)} Socket Mode connections, "
                                   f"expected {count}")

    def close_all(self) -> None:
        with self._cond:
            targets = [c for c in self.connections if c.open]
        for conn in targets:
            conn.close(1001, "going away")
