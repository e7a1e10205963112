"""``respond()`` over the process's pooled HTTP client instead of a connection per answer.

Bolt's ``Respond`` (``slack_bolt/context/respond/respond.py``) builds a ``WebhookClient`` for
every call, and that client posts with ``urllib`` (``slack_sdk/webhook/client.py``): a
name look-up, a new TCP connection and, against ``hooks.slack.com``, a new TLS handshake
per answer. ``status``, ``history``, every refusal told after the ack and every button's
answer go that way; with twenty people typing at once that connection setup was ~14 % of
the CPU samples (py-spy on ``bench/ack_latency.py``'s process, ``request`` at c=20), taken
from the threads that write the acks. ``PooledRespond`` posts the same JSON to the same URL
through the shared ``httpx.Client`` (``bot.integrations.http_client``): kept-alive
connections, one TLS context.

What stays as in Bolt's: the body is the given fields without the ``None`` ones, sent as
``application/json;charset=utf-8``; an HTTP error status is returned, not raised (a 404
for an expired response_url is the caller's to read, as ``WebhookResponse`` has it); one
retry when no connection could be made (``default_retry_handlers``:
``ConnectionErrorRetryHandler``, one retry; never once the post may have reached Slack);
a 30 s timeout (``WebhookClient``'s default).
What differs on purpose: a transport error is raised as ``ResponseUrlUnreachable``, whose
text never carries the URL (a response_url is a credential for that message for 30
minutes, so it stays out of logs and of the refusal the user is told).

Installed by ``install`` as a global middleware, so it runs after Bolt's request
verification: an unsigned request never gets one, and building one makes no call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from slack_bolt import App, BoltContext
from slack_bolt.context.respond import Respond
from slack_sdk.models.attachments import Attachment
from slack_sdk.models.blocks import Block
from slack_sdk.webhook import WebhookResponse

TIMEOUT_SECONDS = 30.0  # slack_sdk's WebhookClient default
HEADERS = {"Content-Type": "application/json;charset=utf-8"}


class ResponseUrlUnreachable(RuntimeError):
    """The answer could not be posted (no response from Slack); the URL is not in the text."""


class PooledRespond(Respond):
    """Bolt's ``respond`` for one request, posting through ``http``."""

    def __init__(self, *, response_url: str, http: httpx.Client) -> None:
        super().__init__(response_url=response_url)
        self._http = http

    def __call__(  # noqa: PLR0913 - the signature is Bolt's Respond.__call__
        self,
        text: str | dict[str, Any] = "",
        blocks: Sequence[dict[Any, Any] | Block] | None = None,
        attachments: Sequence[dict[Any, Any] | Attachment] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        unfurl_links: bool | None = None,
        unfurl_media: bool | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WebhookResponse:
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        if isinstance(text, dict):
            fields: dict[str, Any] = dict(text)
        else:
            fields = {"text": text, "blocks": _plain(blocks), "attachments": _plain(attachments),
                      "response_type": response_type, "replace_original": replace_original,
                      "delete_original": delete_original, "unfurl_links": unfurl_links,
                      "unfurl_media": unfurl_media, "thread_ts": thread_ts,
                      "metadata": metadata}
        body = json.dumps({k: v for k, v in fields.items() if v is not None})
        return self._post(self.response_url, body)

    def _post(self, url: str, body: str) -> WebhookResponse:
        for attempt in (1, 2):
            try:
                got = self._http.post(url, content=body.encode("utf-8"), headers=HEADERS,
                                      timeout=TIMEOUT_SECONDS)
            except httpx.ConnectError as exc:
                # No connection, so nothing reached Slack: the one retry WebhookClient's
                # default handler makes. Not after a connection was made: a protocol error
                # may come after Slack took the post (httpcore raises RemoteProtocolError
                # for a body cut short while reading the answer), and a second post of an
                # in-channel answer would show twice. httpcore already drops a kept-alive
                # connection the server closed before reusing it.
                if attempt == 2:
                    raise ResponseUrlUnreachable(
                        f"Slack's response_url did not answer ({type(exc).__name__})") from None
            except (httpx.TransportError, RuntimeError) as exc:  # RuntimeError: closed client
                raise ResponseUrlUnreachable(
                    f"Slack's response_url did not answer ({type(exc).__name__})") from None
            else:
                return WebhookResponse(url=url, status_code=got.status_code, body=got.text,
                                       headers=dict(got.headers))
        raise AssertionError("unreachable")  # the loop returns or raises


def _plain(items: Sequence[dict[Any, Any] | Block | Attachment] | None
           ) -> list[dict[Any, Any]] | None:
    """Block Kit objects as the dicts Slack receives (slack_sdk's ``to_dict``)."""
    if items is None:
        return None
    return [item if isinstance(item, dict) else item.to_dict() for item in items]


def install(bolt: App, http: httpx.Client) -> None:
    """Every verified request with a response_url answers through ``http``."""

    def pooled_respond(context: BoltContext, next: Callable[[], None]) -> None:  # noqa: A002
        url = context.response_url
        if url:
            context["respond"] = PooledRespond(response_url=url, http=http)
        next()

    bolt.use(pooled_respond)
