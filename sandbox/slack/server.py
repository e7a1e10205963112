"""SlackEmulator: the Slack Web API, upload URLs and response_urls over real HTTP.

Point `slack_sdk.WebClient(base_url=emulator.base_url)` at it; tests inspect and seed the
workspace through the emulator's methods and wait on changes with `wait_for`.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar

from sandbox.slack import chat, directory, files, responses, views
from sandbox.slack.api import ApiContext, ApiError, Handler, Params
from sandbox.slack.models import Call, Channel, Event, User, Usergroup
from sandbox.slack.socket_mode import ACK_TIMEOUT, DEFAULT_APP_TOKEN, SocketModeHub
from sandbox.slack.state import Subscriber, Workspace
from sandbox.slack.wire import RequestHandler

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BOT_TOKEN = "xoxb-sandbox-rollback-bot"
DEFAULT_SIGNING_SECRET = "sandbox-signing-secret"
DEFAULT_CHANNEL = "inc-hotel-voice-bot"
UPLOAD = "upload"  # the recorded "method" of a POST to an upload_url (and its fault queue)
DEFAULT_USERGROUP = "sre-approvers"

METHODS: dict[str, Handler] = {
    **chat.METHODS,
    **directory.METHODS,
    **views.METHODS,
    **files.METHODS,
}


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of 200 views.open calls would
    # see connection resets Slack's own front end never gives. Accept like a real server.
    request_queue_size = 1024


class SlackEmulator:
    """A Slack workspace on 127.0.0.1 that speaks the Web API wire protocol."""

    # Every emulator created in this process, so whole-suite checks (the test suite's
    # secret scan) can read all recorded calls; consumers remove what they have read.
    instances: ClassVar[list[SlackEmulator]] = []

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_token: str = DEFAULT_BOT_TOKEN,
        app_id: str = "A0ROLLBACK",
        clock: Callable[[], float] = time.time,
        trigger_ttl: float = 3.0,
        seed: bool = True,
        app_token: str = DEFAULT_APP_TOKEN,
        ack_timeout: float = ACK_TIMEOUT,
    ) -> None:
        self.host, self.port = host, port
        self.bot_token = bot_token
        self.app_id = app_id
        self.trigger_ttl = trigger_ttl
        # Socket Mode (apps.connections.open and the /link/ websocket).
        self.socket_mode = SocketModeHub(app_id=app_id, app_token=app_token,
                                         ack_timeout=ack_timeout)
        self.ws = Workspace(clock=clock)
        self.bot = self.ws.add_user(
            "rollback-bot", real_name="Rollback Bot", user_id="U0ROLLBOT", is_bot=True,
            bot_id="B0ROLLBOT",
        )  # fmt: skip
        self._failures: dict[str, list[tuple[str, int, float | None]]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if seed:
            self._seed_defaults()
        SlackEmulator.instances.append(self)

    def _seed_defaults(self) -> None:
        for name, real_name in (
            ("alice", "Alice Anders"),  # requester
            ("bob", "Bob Brandt"),  # approver
            ("carol", "Carol Chen"),  # incident commander, approver
            ("dave", "Dave Diaz"),  # not an approver
        ):
            self.add_user(name, real_name=real_name, email=f"{name}@example.com")
        self.add_channel(DEFAULT_CHANNEL, channel_id="C0INCHVB01")
        self.add_usergroup(DEFAULT_USERGROUP, ["bob", "carol"], name="SRE approvers")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SlackEmulator:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), RequestHandler)
        server.daemon_threads = True
        server.emulator = self  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        self.socket_mode.root_url = self.root_url
        # A short poll interval keeps stop() fast; tests start one emulator each.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"slack-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("slack emulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.socket_mode.close_all()  # serve_forever's shutdown does not end upgraded sockets
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SlackEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def base_url(self) -> str:
        """The Web API base URL to give `WebClient(base_url=...)`."""
        return f"{self.root_url}api/"

    @property
    def ctx(self) -> ApiContext:
        return ApiContext(self.ws, self.bot, self.app_id, self.root_url, self.trigger_ttl)

    # --------------------------------------------------------------------- seeding
    def add_user(self, name: str, **kwargs: Any) -> User:
        return self.ws.add_user(name, **kwargs)

    def add_channel(self, name: str, **kwargs: Any) -> Channel:
        return self.ws.add_channel(name, **kwargs)

    def add_usergroup(self, handle: str, users: list[str], **kwargs: Any) -> Usergroup:
        return self.ws.add_usergroup(handle, users, **kwargs)

    def open_dm(self, user: str) -> str:
        """The id of the direct message (IM) between ``user`` and the bot."""
        return self.ws.dm(user).id

    def add_mpim(self, users: list[str]) -> str:
        """The id of the group DM (MPIM) of ``users`` and the bot."""
        return self.ws.add_mpim(users).id

    def archive_channel(self, channel: str) -> None:
        self.ws.archive(channel)

    def user_id(self, ref: str) -> str:
        return self.ws.resolve_user(ref).id

    def channel_id(self, ref: str) -> str:
        return self.ws.resolve_channel(ref).id

    def usergroup_id(self, handle: str) -> str:
        with self.ws.lock:
            for group in self.ws.usergroups.values():
                if handle in (group.id, group.handle):
                    return group.id
        raise KeyError(f"unknown usergroup {handle!r}")

    def post_as_user(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> dict[str, Any]:
        """A human's message (the bot never posts these; tests and the console do)."""
        with self.ws.lock:
            ch = self.ws.resolve_channel(channel)
            uid = self.user_id(user)
            message = {"type": "message", "user": uid, "text": text, "ts": self.ws.next_ts()}
            message["team"] = self.ws.team_id
            return copy.deepcopy(self.ws._store_message(ch, message, thread_ts))

    # ------------------------------------------------------------------ inspection
    def calls(self, method: str | None = None) -> list[Call]:
        """Every request received so far, optionally only one Web API method's."""
        with self.ws.lock:
            return [c for c in self.ws.call_log if method is None or c.method == method]

    def messages(self, channel: str = DEFAULT_CHANNEL) -> list[dict[str, Any]]:
        return copy.deepcopy(self.ws.channel_messages(channel))

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.ws.thread(channel, ts))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.ws.message(channel, ts))

    def ephemerals(
        self, *, user: str | None = None, channel: str | None = None
    ) -> list[dict[str, Any]]:
        with self.ws.lock:
            uid = self.user_id(user) if user else None
            cid = self.channel_id(channel) if channel else None
            return copy.deepcopy(
                [
                    e
                    for e in self.ws.ephemerals
                    if (uid is None or e["recipient"] == uid)
                    and (cid is None or e["channel"] == cid)
                ]
            )

    def open_views(self, user: str) -> list[dict[str, Any]]:
        """The user's modal stack, bottom first; empty when no modal is open."""
        with self.ws.lock:
            stack = self.ws.view_stacks.get(self.user_id(user), [])
            return copy.deepcopy([self.ws.views[v] for v in stack])

    def view(self, view_id: str) -> dict[str, Any]:
        with self.ws.lock:
            return copy.deepcopy(self.ws.views[view_id])

    def view_errors(self, view_id: str) -> dict[str, str]:
        """Errors the app returned with response_action=errors, shown under the inputs."""
        with self.ws.lock:
            return dict(self.ws.view_errors.get(view_id, {}))

    def files(self) -> list[dict[str, Any]]:
        with self.ws.lock:
            return copy.deepcopy(list(self.ws.files.values()))

    def file_content(self, file_id: str) -> bytes:
        with self.ws.lock:
            return self.ws.file_contents[file_id]

    def pins(self, channel: str = DEFAULT_CHANNEL) -> list[str]:
        with self.ws.lock:
            return list(self.ws.pins.get(self.channel_id(channel), []))

    def responses(self) -> list[dict[str, Any]]:
        """Every accepted response_url POST with what it did (replaced, ephemeral, ...)."""
        with self.ws.lock:
            return copy.deepcopy(self.ws.responses)

    def events(self, since: int = 0) -> list[Event]:
        """The events numbered above ``since`` (a ``seq``), those ``forget_logs`` left."""
        with self.ws.lock:
            return self.ws.events_since(since)

    def forget_logs(self) -> None:
        """Drop the logs kept for tests and the console: requests (``calls``), events and
        response_url answers. Real Slack keeps none of this in the app's process; a long
        benchmark drops it so that its memory is not counted as the bot's. What Slack
        holds (messages, files, pins, views) stays. Numbering goes on: the next event's
        ``seq`` follows the last one forgotten, and ``forgotten_calls`` says how many
        calls came before ``calls()[0]``, for readers that mark their place by position."""
        self.ws.forget_logs()

    @property
    def forgotten_calls(self) -> int:
        with self.ws.lock:
            return self.ws.forgotten_calls

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self.ws.subscribe(callback)

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 5.0, *, description: str = ""
    ) -> T:
        return self.ws.wait_for(predicate, timeout, description=description)

    def wait_idle(self, quiet: float = 0.3, timeout: float = 10.0) -> int:
        return self.ws.wait_idle(quiet, timeout)

    # ------------------------------------------------------------ failure injection
    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        times: int = 1,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Make the next `times` calls of `method` fail; `ratelimited` answers 429 by default."""
        code = status if status is not None else (429 if error == "ratelimited" else 200)
        if code == 429 and retry_after is None:
            retry_after = 1
        with self.ws.lock:
            self._failures.setdefault(method, []).extend([(error, code, retry_after)] * times)

    def recover(self, method: str) -> int:
        """Drop the failures still queued for `method` (Slack is back); how many were left."""
        with self.ws.lock:
            return len(self._failures.pop(method, []))

    def fail_upload(self, *, times: int = 1, status: int = 500) -> None:
        """Make the next `times` upload POSTs (to an upload_url from
        files.getUploadURLExternal) fail with HTTP `status`, as files.slack.com does when
        it refuses a file: the URL was issued, the bytes are not stored, and the file stays
        unshared (files.completeUploadExternal answers file_not_found)."""
        with self.ws.lock:
            self._failures.setdefault(UPLOAD, []).extend([("upload_failed", status, None)] * times)

    # --------------------------------------------------------- hooks for the driver
    def issue_trigger_id(self, user: str) -> str:
        with self.ws.lock:
            return views.issue_trigger(self.ctx, self.user_id(user))

    def issue_response_url(
        self,
        *,
        channel: str,
        user: str,
        message_ts: str | None = None,
        is_ephemeral: bool = False,
        thread_ts: str | None = None,
    ) -> str:
        with self.ws.lock:
            return responses.issue_response_url(
                self.ctx,
                channel=self.channel_id(channel),
                user=self.user_id(user),
                message_ts=message_ts,
                is_ephemeral=is_ephemeral,
                thread_ts=thread_ts,
            )

    def deliver_command_reply(self, response_url: str, body: dict[str, Any]) -> dict[str, Any]:
        """Show a slash command's synchronous HTTP reply the way Slack does (ephemeral default)."""
        token = response_url.rstrip("/").rsplit("/", 1)[-1]
        with self.ws.lock:
            return responses.post_response(self.ctx, token, body, via="ack")[1]

    def set_view_state(self, view_id: str, values: dict[str, Any]) -> None:
        with self.ws.lock:
            self.ws.views[view_id]["state"] = {"values": copy.deepcopy(values)}
            self.ws.view_errors.pop(view_id, None)

    def apply_view_response(self, user: str, view_id: str, body: dict[str, Any] | None) -> str:
        """Apply a view_submission answer; raises ApiError when Slack would show an error."""
        with self.ws.lock:
            return views.apply_submission_response(self.ctx, self.user_id(user), view_id, body)

    def close_view(self, user: str, *, all_views: bool = False) -> list[str]:
        with self.ws.lock:
            return views.close_views(self.ctx, self.user_id(user), all_views=all_views)

    # -------------------------------------------------------------- HTTP plumbing
    def handle_api(
        self, method: str, params: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Run one Web API call; (status, headers, body) as Slack would answer."""
        headers: dict[str, str] = {}
        with self.ws.lock:
            try:
                queued = self._failures.get(method)
                if queued:
                    error, status, retry_after = queued.pop(0)
                    if retry_after is not None:
                        headers["Retry-After"] = str(int(retry_after))
                    raise ApiError(error, status=status, headers=headers)
                handler = METHODS.get(method)
                if method == "apps.connections.open":
                    # Authenticated by the app-level token, not the bot token.
                    status, body = 200, self.socket_mode.connections_open(token)
                elif handler is None:
                    raise ApiError("unknown_method")
                elif not token:
                    raise ApiError("not_authed")
                elif token != self.bot_token:
                    raise ApiError("invalid_auth")
                else:
                    status, body = 200, handler(self.ctx, Params(params))
            except ApiError as exc:
                status, body = exc.status, exc.body()
                headers.update(exc.headers)
            # Snapshot under the lock: handlers return live state that others may mutate.
            body = json.loads(json.dumps(body))
            self._record(method, params, body)
        return status, headers, body

    def accept_websocket(self, request: Any, ticket: str | None) -> None:
        self.socket_mode.accept(request, ticket)

    def handle_upload(self, token: str, data: bytes) -> tuple[int, str]:
        with self.ws.lock:
            queued = self._failures.get(UPLOAD)
            if queued:
                _error, status, _ = queued.pop(0)
                text = f"upload failed: HTTP {status}"
                self._record(UPLOAD, {"token": token, "size": len(data)},
                             {"ok": False, "error": "upload_failed"})
                return status, text
            status, text = files.receive_upload(self.ctx, token, data)
            self._record(UPLOAD, {"token": token, "size": len(data)}, {"ok": status == 200})
            return status, text

    def handle_response_url(self, token: str, body: Any) -> tuple[int, dict[str, Any]]:
        with self.ws.lock:
            status, answer = responses.post_response(self.ctx, token, body)
            params = body if isinstance(body, dict) else {"raw": body}
            self._record("response_url", {"token": token, **params}, answer)
            return status, answer

    def _record(self, method: str, params: dict[str, Any], body: dict[str, Any]) -> None:
        call = Call(
            method, copy.deepcopy(params), self.ws.clock(), bool(body.get("ok")), body.get("error"),
            body,
        )  # fmt: skip
        self.ws.record_call(call)
