"""The sandbox web console: a Slack-like channel view in the browser, plus its JSON API.

Runs in the sandbox process next to the emulator and the driver, so the CLI
(``python -m sandbox say``) and the browser send the same signed requests Slack
would: slash commands, ``block_actions`` clicks and ``view_submission``/``view_closed``.

Reads come from the emulator: ``GET /api/state?user=&channel=`` is everything one person
sees (channel with threads, their ephemerals, their open modal, files, the directory).
Updates stream as server-sent events on ``GET /api/events`` (fed by
``emulator.subscribe``); the page refetches the state on each event, and polls while the
stream is down. No login, and it holds the sandbox's signing secret: it listens on
127.0.0.1 unless ``python -m sandbox run --console-host`` (``SANDBOX_CONSOLE_HOST``) says
otherwise, which exposes it to whoever can reach that address.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import queue
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from handlers.work_pool import BUSY_TEXT
from sandbox.slack import DEFAULT_CHANNEL, BotResponse, DriverError, SlackDriver, SlackEmulator
from sandbox.slack.blockkit import iter_elements
from sandbox.slack.models import Event
from sandbox.slack.render import names_from, render_events, text_of

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css",
                 "svg": "image/svg+xml", "png": "image/png", "ico": "image/x-icon"}
# Who the seeded sandbox people are in the drill; approver comes from the user groups.
ROLE_HINTS = {"alice": ["requester"], "carol": ["incident commander"], "dave": ["not an approver"]}
KEEPALIVE_SECONDS = 15.0
QUIET_EVENTS = {"api.call", "command.invoked"}  # no change to show: its effects have events
# A command's immediate acks (``handlers.commands``): ephemeral text that is not an answer.
PROGRESS = (":hourglass:", ":mag:")


class ConsoleError(Exception):
    """Something a person did that Slack would refuse; shown in the page, not a stack trace."""


class Console:
    """HTTP server for the console page and its API; `start()` serves in a daemon thread."""

    def __init__(self, *, emulator: SlackEmulator, driver: SlackDriver, host: str = "127.0.0.1",
                 port: int = 0, channel: str = DEFAULT_CHANNEL,
                 auto: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.emulator = emulator
        self.auto = auto  # `python -m sandbox auto`: rollback-bot auto inside this sandbox
        self.driver = driver
        self.default_channel = channel
        self._lock = threading.Lock()  # the CLI's say/click read "what this caused" by marks
        self._closing = threading.Event()
        self._streams: set[queue.SimpleQueue[Event | None]] = set()
        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self.server.console = self  # type: ignore[attr-defined]
        # A wildcard address is reached through loopback from here (the CLI, the banner).
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.url = f"http://{shown}:{self.server.server_address[1]}"
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Console:
        self._thread = threading.Thread(target=self.server.serve_forever, name="sandbox-console",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        log.info("sandbox console at %s/", self.url)
        return self

    def stop(self) -> None:
        self._closing.set()
        for stream in list(self._streams):
            stream.put(None)
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------- acting as people
    def say(self, line: str, *, user: str = "alice", channel: str | None = None,
            quiet: float = 0.5, timeout: float = 20.0) -> dict[str, Any]:
        """Type `line` as `user`; what it caused, as text, and whether the bot refused (for
        the CLI: ``{"text", "refused"}``)."""
        with self._lock:
            mark = len(self.emulator.events())
            reply = self.driver.say(line, user=user, channel=channel or self.default_channel)
            if reply.status != 200:
                return {"text": f"(the bot answered HTTP {reply.status})", "refused": True}
            self.emulator.wait_idle(quiet, timeout)
            return self._caused(mark, user)

    def click(self, *, channel: str, ts: str, action_id: str, user: str,
              block_id: str | None = None) -> dict[str, Any]:
        """Click a button as `user`, as the page does; what it caused (like ``say``)."""
        with self._lock:
            mark = len(self.emulator.events())
            try:
                reply = self.driver.click(channel, ts, action_id, user, block_id=block_id)
            except DriverError as exc:
                raise ConsoleError(f"This action is no longer available ({exc})") from None
            if reply.status != 200:
                return {"text": f"(the bot answered HTTP {reply.status})", "refused": True}
            self.emulator.wait_idle(0.5, 20)
            return self._caused(mark, user)

    def _caused(self, mark: int, user: str) -> dict[str, Any]:
        events = self.emulator.events(mark)
        return {"text": render_events(self.emulator, events) or "(no reply)",
                "refused": bool(self.refusals(events, user))}

    def refusals(self, events: list[Event], user: str) -> list[str]:
        """The refusals among ``events`` shown to ``user``: what the console shows as an
        error. The bot answers every refusal with an ephemeral message to the person who
        acted (``handlers.errors.tell_user``: plain text, no blocks; or, for a command it
        cannot parse, ``handlers.views.error_blocks``, a ``:no_entry_sign:`` section). Its
        other ephemeral answers carry blocks (help, status, history) or are the progress
        acks of a command (``PROGRESS``), except "busy" (``BUSY_TEXT``), which is a refusal."""
        uid = self.emulator.user_id(user)
        shown = {(e.data.get("channel"), e.data.get("ts")) for e in events
                 if e.kind in ("ephemeral.posted", "ephemeral.replaced")
                 and e.data.get("user") in (None, uid)}
        found = []
        for ephemeral in self.emulator.ephemerals(user=uid):
            if (ephemeral.get("channel"), ephemeral.get("ts")) not in shown:
                continue
            text = str(ephemeral.get("text") or "")
            blocks = ephemeral.get("blocks") or []
            first = str(((blocks[0] if blocks else {}).get("text") or {}).get("text", ""))
            # The busy refusal starts like a progress ack (":hourglass:"), so it is named.
            if first.startswith(":no_entry_sign:") or (not blocks and text and (
                    BUSY_TEXT in text or not text.startswith(PROGRESS))):
                found.append(first or text)
        return found

    # ----------------------------------------------------------- buttons by label
    def buttons(self, *, user: str, channel: str,
                rollback: str | None = None) -> list[dict[str, Any]]:
        """Every button `user` sees in `channel` (messages, thread replies and their own
        ephemerals), newest message first; with ``rollback`` (``RB-1``) only on messages
        that name it."""
        ws = self.emulator.ws
        names = names_from(self.emulator)
        with ws.lock:
            me = ws.resolve_user(user)
            ch = ws.resolve_channel(channel)
            messages = list(self.emulator.messages(ch.id))
            for message in list(messages):
                if message.get("reply_count") and message.get("thread_ts") == message["ts"]:
                    messages += self.emulator.thread(ch.id, message["ts"])[1:]
            messages += self.emulator.ephemerals(user=me.id, channel=ch.id)
        named = re.compile(rf"(?<![\w-]){re.escape(rollback)}(?![\w-])", re.IGNORECASE) \
            if rollback else None
        found = []
        for message in sorted(messages, key=lambda m: float(m["ts"]), reverse=True):
            if named is not None and not named.search(
                    json.dumps([message.get("text"), message.get("blocks")])):
                continue
            for block, element in iter_elements(message.get("blocks") or []):
                if element.get("type") == "button":
                    found.append({"label": text_of(element.get("text"), names).strip(),
                                  "ts": message["ts"], "action_id": element.get("action_id"),
                                  "block_id": block.get("block_id")})
        return found

    def click_label(self, label: str, *, user: str, channel: str,
                    rollback: str | None = None) -> dict[str, Any]:
        """``python -m sandbox click "<label>"``: the newest button with that label (case
        and spacing aside); an unknown label answers the labels there are."""
        buttons = self.buttons(user=user, channel=channel, rollback=rollback)
        wanted = " ".join(label.split()).casefold()
        match = next((b for b in buttons if " ".join(b["label"].split()).casefold() == wanted),
                     None)
        if match is None:
            labels = list(dict.fromkeys(b["label"] for b in buttons))
            where = f" on messages naming {rollback}" if rollback else ""
            return {"ok": False, "unknown_label": True, "labels": labels,
                    "error": f"No button labelled \"{label}\" for {user} in {channel}{where}. "
                             + (f"Buttons there: {', '.join(f'[{x}]' for x in labels)}."
                                if labels else "There are no buttons there.")}
        result = self.click(channel=channel, ts=match["ts"], action_id=match["action_id"],
                            user=user, block_id=match["block_id"])
        return {"ok": True, "clicked": match, **result}

    def send_line(self, line: str, *, user: str, channel: str) -> dict[str, Any]:
        """The browser's message box: send and return at once; the result streams in."""
        line = line.strip()
        if not line:
            raise ConsoleError("type a message or a slash command")
        if not line.startswith("/"):
            line = self._client_text(line)
        reply = self.driver.say(line, user=user, channel=channel)
        if reply.status != 200 and line.startswith("/"):
            # Slack shows this for a command; a message is posted whatever the app answers.
            raise ConsoleError(f"{line.split()[0]} failed with the error \"dispatch_failed\" "
                               f"(the app answered HTTP {reply.status})")
        return {"ok": True, "text": "", "status": reply.status}

    def _client_text(self, text: str) -> str:
        """What Slack's client sends for typed text: &, <, > escaped, @name as a mention."""
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        ws = self.emulator.ws
        with ws.lock:
            names = {u.name: u.id for u in ws.users.values()}
        return re.sub(r"(?<![\w<])@([a-z0-9._-]+)",
                      lambda m: f"<@{names[m[1]]}>" if m[1] in names else m[0], text)

    def action(self, *, user: str, channel: str, ts: str, action_id: str,
               block_id: str | None = None, value: Any = None) -> dict[str, Any]:
        """A click on a button, or a choice in a select, of a message as it is stored now."""
        try:
            reply = self.driver.click(channel, ts, action_id, user, value, block_id=block_id)
        except DriverError as exc:
            raise ConsoleError(f"This action is no longer available ({exc})") from None
        return self._answer(reply)

    def submit_view(self, *, user: str, values: dict[str, Any],
                    view_id: str | None = None) -> dict[str, Any]:
        try:
            reply = self.driver.submit_view(user, values, view_id)
        except DriverError as exc:
            raise ConsoleError(str(exc)) from None
        error = reply.view_error
        return {"ok": reply.view_result != "error", "result": reply.view_result,
                "status": reply.status,
                "error": None if error is None else str(error.body().get("error", error)),
                "errors": self._view_errors(reply)}

    def _view_errors(self, reply: BotResponse) -> dict[str, str]:
        view_id = (reply.payload.get("view") or {}).get("id")
        return self.emulator.view_errors(view_id) if view_id else {}

    def close_view(self, *, user: str) -> dict[str, Any]:
        try:
            reply = self.driver.close_view(user)
        except DriverError as exc:
            raise ConsoleError(str(exc)) from None
        return {"ok": True, "notified": reply is not None}

    @staticmethod
    def _answer(reply: BotResponse) -> dict[str, Any]:
        if reply.status != 200:
            raise ConsoleError(f"the app answered HTTP {reply.status}")
        return {"ok": True, "status": reply.status}

    # ------------------------------------------------------------------------ reads
    def directory(self) -> dict[str, Any]:
        """People (with their drill roles) and channels of the sandbox workspace."""
        ws = self.emulator.ws
        with ws.lock:
            approvers = {uid for group in ws.usergroups.values() for uid in group.users}
            users = [{"id": u.id, "name": u.name, "real_name": u.real_name, "is_bot": u.is_bot,
                      "roles": (["approver"] if u.id in approvers else [])
                      + ROLE_HINTS.get(u.name, [])}
                     for u in ws.users.values()]
            channels = [{"id": c.id, "name": c.name, "is_private": c.is_private,
                         "is_im": c.is_im, "members": sorted(c.members), "topic": c.topic}
                        for c in ws.channels.values()]
            seq = len(ws.events)
        return {"users": users, "channels": channels, "seq": seq, "bot": self.emulator.bot.id,
                "team": ws.team_name}

    def state(self, *, user: str, channel: str) -> dict[str, Any]:
        """Everything `user` sees with `channel` open: what the page renders."""
        ws = self.emulator.ws
        with ws.lock:  # one consistent snapshot
            me = ws.resolve_user(user)
            ch = ws.resolve_channel(channel)
            found = self.directory()
            messages = self.emulator.messages(ch.id)
            pins = set(ws.pins.get(ch.id, []))
            for message in messages:
                message["pinned"] = message["ts"] in pins
                if message.get("reply_count") and message.get("thread_ts") == message["ts"]:
                    message["replies"] = self.emulator.thread(ch.id, message["ts"])[1:]
            views = self.emulator.open_views(me.id)
            top = views[-1] if views else None
            found.update(
                me=me.id, channel=ch.id, messages=messages, files=self.files(),
                ephemerals=self.emulator.ephemerals(user=me.id, channel=ch.id),
                view=top, view_depth=len(views),
                view_errors=self.emulator.view_errors(top["id"]) if top else {},
            )
        return found

    def files(self) -> list[dict[str, Any]]:
        """Shared files, newest last, each with the console URL of its content."""
        keep = ("id", "name", "title", "mimetype", "filetype", "size", "created", "channels")
        return [{k: f.get(k) for k in keep} | {"url": f"/api/files/{f['id']}"}
                for f in self.emulator.files() if f.get("upload_state") == "complete"]

    def file(self, file_id: str) -> tuple[dict[str, Any], bytes]:
        for record in self.emulator.files():
            if record["id"] == file_id and record.get("upload_state") == "complete":
                return record, self.emulator.file_content(file_id)
        raise KeyError(file_id)

    # ------------------------------------------------------------------- streaming
    def stream(self, req: BaseHTTPRequestHandler) -> None:
        """Server-sent events: one `change` per burst of emulator events, keepalives between."""
        events: queue.SimpleQueue[Event | None] = queue.SimpleQueue()

        def on_event(event: Event) -> None:  # runs under the emulator lock: never block
            if event.kind not in QUIET_EVENTS:
                events.put(event)

        unsubscribe = self.emulator.subscribe(on_event)
        self._streams.add(events)
        try:
            req.send_response(200)
            req.send_header("Content-Type", "text/event-stream; charset=utf-8")
            req.send_header("Cache-Control", "no-store")
            req.end_headers()
            seq = self.directory()["seq"]
            req.wfile.write(f"retry: 1000\nevent: hello\ndata: {json.dumps({'seq': seq})}\n\n"
                            .encode())
            while not self._closing.is_set():
                try:
                    first = events.get(timeout=KEEPALIVE_SECONDS)
                except queue.Empty:
                    req.wfile.write(b": keepalive\n\n")
                    continue
                batch = [first]
                while True:  # coalesce a burst into one notification
                    try:
                        batch.append(events.get_nowait())
                    except queue.Empty:
                        break
                if any(e is None for e in batch):
                    break
                real = [e for e in batch if e is not None]
                data = {"seq": real[-1].seq, "kinds": sorted({e.kind for e in real})}
                req.wfile.write(f"id: {real[-1].seq}\nevent: change\ndata: {json.dumps(data)}\n\n"
                                .encode())
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the tab went away
        finally:
            unsubscribe()
            self._streams.discard(events)

    # --------------------------------------------------------------------- routing
    def handle_post(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        user = str(data.get("user") or "alice")
        channel = str(data.get("channel") or self.default_channel)
        if path == "/api/say":
            if data.get("wait", True):  # the CLI's contract: wait, then the rendered text
                return {"ok": True, **self.say(str(data["line"]), user=user, channel=channel)}
            return self.send_line(str(data["line"]), user=user, channel=channel)
        if path == "/api/click":  # the CLI's contract, like /api/say
            if data.get("label") is not None:  # `python -m sandbox click "<label>"`
                rollback = data.get("rollback")
                return self.click_label(str(data["label"]), user=user, channel=channel,
                                        rollback=str(rollback) if rollback else None)
            return {"ok": True, **self.click(channel=channel, ts=str(data["ts"]),
                                             action_id=str(data["action_id"]), user=user)}
        if path == "/api/action":
            return self.action(user=user, channel=channel, ts=str(data["ts"]),
                               action_id=str(data["action_id"]), block_id=data.get("block_id"),
                               value=data.get("value"))
        if path in ("/api/view/submit", "/api/submit"):
            return self.submit_view(user=user, values=data.get("values") or {},
                                    view_id=data.get("view_id"))
        if path == "/api/view/close":
            return self.close_view(user=user)
        if path == "/api/auto" and self.auto is not None:
            return self.auto(data)
        raise LookupError(f"unknown endpoint {path}")

    def handle_get(self, req: _Handler) -> None:
        url = urlsplit(req.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path == "/api/events":
            self.stream(req)
        elif path == "/api/state":
            req.send_json(200, self.state(user=query.get("user") or "alice",
                                          channel=query.get("channel") or self.default_channel))
        elif path == "/api/directory":
            req.send_json(200, self.directory())
        elif path == "/api/messages":
            channel = query.get("channel") or self.default_channel
            req.send_json(200, {"channel": channel, "messages": self.emulator.messages(channel)})
        elif path == "/api/files":
            req.send_json(200, {"files": self.files()})
        elif path.startswith("/api/files/"):
            self._send_file(req, path.removeprefix("/api/files/").split("/", 1)[0])
        else:
            self._send_static(req, path)

    def _send_file(self, req: _Handler, file_id: str) -> None:
        try:
            record, content = self.file(file_id)
        except KeyError:
            req.send_json(404, {"ok": False, "error": "file_not_found"})
            return
        mimetype = str(record.get("mimetype") or "application/octet-stream")
        if not (mimetype.startswith("image/") or mimetype == "application/pdf"):
            # Show logs, JSON, Markdown... as text; never let a file run as a page here.
            mimetype = "text/plain" if _is_text(content) else "application/octet-stream"
        name = str(record.get("name") or file_id).replace('"', "")
        req.send_bytes(200, content, f"{mimetype}; charset=utf-8" if mimetype == "text/plain"
                       else mimetype, {"Content-Disposition": f'inline; filename="{name}"',
                                       "Content-Security-Policy": "sandbox; default-src 'none'"})

    @staticmethod
    def _send_static(req: _Handler, path: str) -> None:
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        page = (STATIC / name.lstrip("/")).resolve()
        if not page.is_file() or STATIC not in page.parents:
            req.send_json(404, {"ok": False, "error": "not found"})
            return
        kind = CONTENT_TYPES.get(page.suffix.lstrip("."))
        kind = kind or mimetypes.guess_type(page.name)[0] or "application/octet-stream"
        req.send_bytes(200, page.read_bytes(), f"{kind}; charset=utf-8")


def _is_text(content: bytes) -> bool:
    try:
        content[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:  # a cut multi-byte character at the end is fine
        return exc.start >= 4090
    return b"\x00" not in content[:4096]


class _Handler(BaseHTTPRequestHandler):
    """Routes to the Console on `server.console`; errors become JSON, never stack traces."""

    server_version = "rollback-bot-console"

    @property
    def console(self) -> Console:
        return self.server.console  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug(format, *args)

    def send_bytes(self, status: int, body: bytes, content_type: str,
                   headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, data: Any) -> None:
        self.send_bytes(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        try:
            self.console.handle_get(self)
        except KeyError as exc:
            self.send_json(404, {"ok": False, "error": f"not found: {exc}"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(data, dict):
                raise ConsoleError("send a JSON object")
            self.send_json(200, self.console.handle_post(self.path, data))
        except ConsoleError as exc:  # Slack would refuse this too: say why, in the page
            self.send_json(200, {"ok": False, "error": str(exc)})
        except LookupError as exc:
            self.send_json(404, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        except Exception as exc:  # shown in the console, never a stack trace
            log.warning("console request %s failed", self.path, exc_info=True)
            self.send_json(400, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
