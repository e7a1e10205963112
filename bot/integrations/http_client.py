"""The process's one HTTP client: health probes, checks, Prometheus, webhooks, PagerDuty and
the status page share its connection pool and its TLS context.

Why one: building an ``httpx.Client`` builds an ``ssl.SSLContext`` (loading the CA bundle),
which was ~79 % of a monitor check's 20–30 ms of CPU when every check made its own client
(issue 16); sharing one brings a check to a few ms. httpx documents its ``Client`` as safe
to share between threads (``httpx/_client.py``, ``Client`` docstring: "It can be shared
between threads"; encode/httpx#2380), which monitor ticks, the verification suite and
the assessment's probes do.

What a caller keeps: its own timeout, passed with every request (``timeout=``), since the
shared client's default is no caller's. What stays as with a client per call: redirects
are not followed (httpx's default), TLS is verified with httpx's defaults (the CA bundle,
``SSL_CERT_FILE``/``SSL_CERT_DIR`` from the environment), and no cookie outlives its
request: a client per call started each check with an empty jar, so the shared jar takes
none (a session cookie one service's health endpoint sets must not ride along on the next
probe, nor the jar grow for as long as the process runs).
"""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar, CookiePolicy, DefaultCookiePolicy
from urllib.request import Request

import httpx

# Concurrent requests: monitor ticks run on a bounded pool (tens of workers) next to the
# verification suites (8 checks each) and the assessments (8 probes); beyond this many open
# connections a request waits for one (bounded by its own timeout's pool part).
MAX_CONNECTIONS = 100
# Idle connections kept for reuse: a check's next request to the same host skips the TCP
# and TLS handshakes. httpx's default is 20; one per concurrent monitor worker is cheap.
MAX_KEEPALIVE = 32
# A fallback only: every caller passes its own timeout (httpx's default is 5 s too).
DEFAULT_TIMEOUT = 5.0


class _NoCookies(DefaultCookiePolicy):
    """Never store a cookie, hence never send one the server did not get from the request."""

    def set_ok(self, cookie: Cookie, request: Request) -> bool:
        return False


def cookieless_jar() -> CookieJar:
    policy: CookiePolicy = _NoCookies()
    return CookieJar(policy=policy)


def shared_client(*, max_connections: int = MAX_CONNECTIONS,
                  max_keepalive: int = MAX_KEEPALIVE) -> httpx.Client:
    """The process's client; the composition root makes one and closes it at shutdown."""
    return httpx.Client(
        timeout=DEFAULT_TIMEOUT,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_keepalive),
        cookies=cookieless_jar(),
    )
