"""Rate limits on the login path (T-27): per source address and per client, answered 429.

A pure ASGI middleware, independent of the app it wraps. It classifies a request by its
path — ``/<short-key>/authorize``, ``/<short-key>/authorize/choose``,
``/<short-key>/callback``, ``/<short-key>/token`` — and counts it in fixed one-minute
windows:

* per **source address** in every category (the ASGI ``client``; IPv6 addresses count per
  /64, the block one subscriber usually holds);
* per **client** at ``authorize`` (the query's ``client_id``) and ``token`` (HTTP Basic
  user name, else the form's ``client_id``; the form is read up to 16 KiB and handed on to
  the app unchanged). A token request that names its client only inside a
  ``client_assertion`` counts per address only.

Behind a reverse proxy the ASGI ``client`` is the proxy: configure the server to take the
address from the proxy's header for trusted proxies only (uvicorn ``--proxy-headers
--forwarded-allow-ips``), or every person shares the proxy's budget.

Counters live in Redis when the broker runs as several processes — counted in each process
and sent together every 0.1 s (:class:`RedisRateLimiter`) — in a bounded in-process map
otherwise. When Redis fails each process limits with its own counts and a warning is logged
at most once a minute.

An exceeded limit is answered ``429 Too Many Requests`` with ``Retry-After`` (RFC 6585 §4):
a German/English page for people, and at the token endpoint an OAuth-style JSON error
``{"error": "temporarily_unavailable", ...}`` — RFC 6749 §5.2 has no code for rate limits;
``temporarily_unavailable`` is the registered code that means "try again later", and the
status and ``Retry-After`` carry the rest. The broker puts this middleware inside
:class:`~.security.Guard`, so the answers carry the same security headers as every other
answer (T-21).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import ipaddress
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote_plus

from jinja2 import Environment, FileSystemLoader, select_autoescape
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .i18n import pick_language
from .security import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CATEGORIES",
    "CLIENT_CATEGORIES",
    "MemoryRateLimiter",
    "RateLimitMiddleware",
    "RateLimiter",
    "RateLimits",
    "RedisRateLimiter",
    "classify",
]

log = logging.getLogger("healthid_broker.web")

CATEGORIES = ("authorize", "choose", "callback", "token")
CLIENT_CATEGORIES = ("authorize", "token")
FORM_LIMIT = 16 * 1024
WINDOW = 60.0

_DEFAULT_PER_ADDRESS = {"authorize": 60, "choose": 60, "callback": 60, "token": 600}
_DEFAULT_PER_CLIENT = {"authorize": 3000, "token": 3000}


@dataclass(frozen=True)
class RateLimits:
    """Requests per minute; 0 switches a limit off.

    ``per_address`` has a limit per category (:data:`CATEGORIES`), ``per_client`` one for
    ``authorize`` and ``token``. The defaults allow one login a second from one address
    and fifty a second for one client — raise them for an application whose users sit
    behind one address (a clinic's network, carrier-grade NAT).
    """

    per_address: Mapping[str, int] = field(default_factory=lambda: dict(_DEFAULT_PER_ADDRESS))
    per_client: Mapping[str, int] = field(default_factory=lambda: dict(_DEFAULT_PER_CLIENT))

    def __post_init__(self) -> None:
        for name, table, allowed in (("address", self.per_address, CATEGORIES),
                                     ("client", self.per_client, CLIENT_CATEGORIES)):
            for cat, n in table.items():
                if cat not in allowed:
                    raise ValueError(f"no per-{name} rate limit for {cat!r}; one of "
                                     f"{', '.join(allowed)}")
                if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                    raise ValueError(f"a rate limit is a whole number ≥ 0, got {n!r}")

    @property
    def enabled(self) -> bool:
        return any(self.per_address.values()) or any(self.per_client.values())

    @classmethod
    def parse(cls, specs: Iterable[str]) -> RateLimits:
        """From ``--rate-limit`` values: ``off``, ``CATEGORY=N`` (per address) or
        ``client.CATEGORY=N`` (per client), applied over the defaults."""
        address, client = dict(_DEFAULT_PER_ADDRESS), dict(_DEFAULT_PER_CLIENT)
        for raw in specs:
            spec = raw.strip()
            if spec == "off":
                address = dict.fromkeys(address, 0)
                client = dict.fromkeys(client, 0)
                continue
            name, eq, value = spec.partition("=")
            if not eq:
                raise ValueError(f"a rate limit is CATEGORY=N, client.CATEGORY=N or off: "
                                 f"{spec!r}")
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"a rate limit is a whole number: {spec!r}") from None
            table = address
            if name.startswith("client."):
                table, name = client, name[len("client."):]
                if name not in CLIENT_CATEGORIES:
                    raise ValueError(f"no per-client rate limit for {name!r}")
            elif name not in CATEGORIES:
                raise ValueError(f"no rate-limit category {name!r}; one of "
                                 f"{', '.join(CATEGORIES)}")
            table[name] = n
        return cls(address, client)


def classify(path: str) -> str | None:
    """The rate-limit category of a request path, or ``None`` when it is not counted."""
    short_key, slash, rest = path[1:].partition("/")
    if not path.startswith("/") or not short_key or not slash:
        return None
    if rest in ("authorize", "callback", "token"):
        return rest
    if rest == "authorize/choose":
        return "choose"
    return None


def address_key(client: Sequence[Any] | None) -> str:
    """The counted form of a source address: IPv4 as is, IPv6 as its /64."""
    if not client:
        return "unknown"
    host = str(client[0])
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]  # a unix socket path or a test client name
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _digest(text: str) -> str:
    # counters are keyed by a hash: no address or client id in Redis, bounded key length
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


# ---------------------------------------------------------------------------- limiters


class RateLimiter(Protocol):
    """Counts one request in ``buckets`` — ``(key, limit)`` pairs, in order — and answers
    the seconds until the caller may retry if a limit is exceeded, else ``None``.

    Counting stops at the first exceeded bucket: a request refused for its address does
    not count against its client, so a flood from one address cannot use up a client's
    budget for everyone else."""

    async def hit(self, buckets: Sequence[tuple[str, int]]) -> float | None: ...

    async def aclose(self) -> None: ...


class MemoryRateLimiter:
    """Fixed windows in a bounded map (one process: the embedded shape).

    At most ``max_entries`` counters; the least recently used goes first, so random client
    ids cannot grow memory (a flood of them only dilutes itself)."""

    def __init__(self, *, window: float = WINDOW, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.max_entries = max_entries
        self.clock = clock
        self._counts: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counts)

    async def hit(self, buckets: Sequence[tuple[str, int]]) -> float | None:
        now = self.clock()
        counts = self._counts
        retry: float | None = None
        for key, limit in buckets:
            end, n = counts.get(key, (0.0, 0))
            if end <= now:
                end, n = now + self.window, 0
            n += 1
            counts[key] = (end, n)
            counts.move_to_end(key)
            if n > limit:
                retry = end - now
                break
        while len(counts) > self.max_entries:
            counts.popitem(last=False)
        return retry

    async def aclose(self) -> None:
        """Nothing to release (the counters live in this process)."""


# Adds each counter's increment (ARGV[i + 1]); a counter without a TTL (a new window) gets
# the window's PEXPIRE (ARGV[1]). Returns every counter's total and remaining milliseconds,
# flat: {n1, ttl1, n2, ttl2, ...}. Runs atomically in Redis.
_ADD_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCRBY', key, ARGV[i + 1])
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  out[#out + 1] = n
  out[#out + 1] = ttl
end
return out
"""


class RedisRateLimiter:
    """Fixed windows in Redis, shared by every broker process using the same ``prefix``
    (the counters' keys start with ``<prefix without ':'>-rl:``).

    Requests are counted in the process and the counts are sent to Redis together every
    ``sync_interval`` seconds — one script call for every counter touched since the last
    one — which also brings back the totals of all processes. A request is judged by the
    last totals plus what this process counted since: a process sees the others' requests
    late — a counter's total reaches a process with the answer to its own next sync of that
    counter — so across N processes a limit can be exceeded by what the other processes
    admit within about one interval; a flood is refused at once by the process it reaches.
    One Redis round trip per request cost the login about a sixth of its CPU
    (docs/performance.md); ``sync_interval=0`` sends every count at once and is exact.

    If Redis fails, each process goes on limiting with its own counts and logs one warning
    a minute. At most ``max_entries`` known counters; the least recently used goes first.
    """

    def __init__(self, client: Redis, *, prefix: str = "hidb:", window: float = WINDOW,
                 sync_interval: float = 0.1, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if sync_interval < 0:
            raise ValueError("sync_interval must be ≥ 0")
        self._client = client
        # beside the store's keys, not below them: "hidb:" → "hidb-rl:"
        self._prefix = prefix.rstrip(":") + "-rl:"
        self._window = window
        self._window_ms = max(1, int(window * 1000))
        self._script = client.register_script(_ADD_SCRIPT)
        self._interval = sync_interval
        self._max_entries = max_entries
        self._clock = clock
        self._warned_at: float | None = None
        # key → (window end on this process's clock, total of all processes at last sync)
        self._known: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._pending: dict[str, int] = {}  # counted here, not yet sent
        self._sending: dict[str, int] = {}  # sent, answer not yet back
        self._syncer: asyncio.Task[None] | None = None

    def _current(self, key: str, now: float) -> tuple[float, int]:
        end, total = self._known.get(key, (0.0, 0))
        if end <= now:
            return now + self._window, 0
        return end, total

    async def hit(self, buckets: Sequence[tuple[str, int]]) -> float | None:
        if self._interval > 0 and self._syncer is None:
            self._syncer = asyncio.create_task(self._sync_loop())
        for key, limit in buckets:
            self._pending[key] = self._pending.get(key, 0) + 1  # sync() swaps the dict
            if self._interval == 0:
                await self.sync()
            now = self._clock()
            end, total = self._current(key, now)
            if total + self._sending.get(key, 0) + self._pending.get(key, 0) > limit:
                return max(end - now, 0.001)
        return None

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.sync()

    async def sync(self) -> None:
        """Send the counts made here since the last call and take back the totals."""
        batch = self._pending
        if not batch:
            return
        self._pending = {}
        sending = self._sending
        for key, n in batch.items():
            sending[key] = sending.get(key, 0) + n
        try:
            reply = await self._script(keys=[self._prefix + k for k in batch],
                                       args=[self._window_ms, *batch.values()])
        except (RedisError, OSError) as exc:
            now = self._clock()
            if self._warned_at is None or now - self._warned_at >= 60:
                self._warned_at = now
                log.warning("rate limits count per process only: Redis failed (%s)",
                            type(exc).__name__)
            for key, n in batch.items():  # keep limiting with this process's own counts
                end, total = self._current(key, now)
                self._remember(key, end, total + n)
        else:
            now = self._clock()
            for i, key in enumerate(batch):
                self._remember(key, now + int(reply[2 * i + 1]) / 1000, int(reply[2 * i]))
        finally:
            for key, n in batch.items():
                left = sending[key] - n
                if left:
                    sending[key] = left
                else:
                    del sending[key]

    def _remember(self, key: str, end: float, total: int) -> None:
        known = self._known
        known[key] = (end, total)
        known.move_to_end(key)
        while len(known) > self._max_entries:
            known.popitem(last=False)

    async def aclose(self) -> None:
        """Stop the periodic sync and send what is still counted only here."""
        if self._syncer is not None:
            self._syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
            self._syncer = None
        await self.sync()


# ---------------------------------------------------------------------------- the middleware

_HERE = Path(__file__).parent
_env = Environment(loader=FileSystemLoader(_HERE / "templates"),
                   autoescape=select_autoescape(["html"]))

TEXTS = {
    "de": {
        "title": "Zu viele Anfragen",
        "lead": "Von Ihrem Anschluss kamen gerade sehr viele Anmeldeversuche.",
        "wait": "Bitte warten Sie etwa {seconds} Sekunden und versuchen Sie es dann erneut.",
        "code": "Fehlercode",
    },
    "en": {
        "title": "Too many requests",
        "lead": "Very many login attempts came from your connection just now.",
        "wait": "Please wait about {seconds} seconds, then try again.",
        "code": "Error code",
    },
}


def _basic_user(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The client id of an HTTP Basic ``authorization`` header (RFC 6749 §2.3.1)."""
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, colon, _secret = decoded.partition(":")
        return unquote_plus(user) if colon and user else None
    return None


def _content_type(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return b""


def _first(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    for k, v in pairs:
        if k == name:
            return v or None
    return None


class RateLimitMiddleware:
    """Counts login-path requests and answers 429 when a limit is exceeded (module doc)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, limits: RateLimits, *,
                 static_base: str = "/static", sandbox: bool = False) -> None:
        self.app = app
        self.limiter = limiter
        self.limits = limits
        self.static_base = static_base.rstrip("/")
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        category = classify(scope["path"])
        if category is None:
            await self.app(scope, receive, send)
            return
        buckets: list[tuple[str, int]] = []
        per_address = self.limits.per_address.get(category, 0)
        if per_address:
            buckets.append((f"{category}:a:{_digest(address_key(scope.get('client')))}",
                            per_address))
        per_client = self.limits.per_client.get(category, 0)
        if per_client:
            client_id, receive = await self._client_id(category, scope, receive)
            if client_id is not None:
                buckets.append((f"{category}:c:{_digest(client_id)}", per_client))
        retry = await self.limiter.hit(buckets) if buckets else None
        if retry is None:
            await self.app(scope, receive, send)
            return
        log.info("rate limit exceeded at %s", category)
        await self._too_many(scope, send, category, max(1, math.ceil(retry)))

    async def _client_id(self, category: str, scope: Scope,
                         receive: Receive) -> tuple[str | None, Receive]:
        """The request's client id and the receive channel the app must use (the form
        body, when it was read, is replayed)."""
        if category == "authorize":
            query = scope.get("query_string", b"").decode("latin-1")
            return _first(parse_qsl(query, keep_blank_values=True), "client_id"), receive
        headers = scope.get("headers", ())
        user = _basic_user(headers)
        if user is not None:
            return user, receive
        if _content_type(headers) != b"application/x-www-form-urlencoded":
            return None, receive
        buffered: list[Message] = []
        size, complete = 0, False
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
            if size > FORM_LIMIT:
                break
        client_id = None
        if complete and size <= FORM_LIMIT:
            body = b"".join(m.get("body", b"") for m in buffered)
            try:
                pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
            except (UnicodeDecodeError, ValueError):
                pairs = []
            client_id = _first(pairs, "client_id")

        async def replay() -> Message:
            if buffered:
                return buffered.pop(0)
            return await receive()

        return client_id, replay

    async def _too_many(self, scope: Scope, send: Send, category: str, retry: int) -> None:
        # the security headers (CSP, HSTS, no-store, …) come from web.security.Guard, which
        # sits outside this middleware (web.broker_app.create_broker_app)
        headers = [(b"retry-after", str(retry).encode())]
        if category == "token":
            body = json.dumps({
                "error": "temporarily_unavailable",
                "error_description": f"too many requests; retry after {retry} s",
            }).encode()
            headers.append((b"content-type", b"application/json"))
        else:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            accept_language = None
            for name, value in scope.get("headers", ()):
                if name.lower() == b"accept-language":
                    accept_language = value.decode("latin-1")
            lang = pick_language(query, accept_language)
            t = TEXTS[lang]
            body = _env.get_template("rate_limited.html").render(
                lang=lang, sandbox=self.sandbox, static_base=self.static_base,
                title=t["title"], lead=t["lead"],
                wait=t["wait"].format(seconds=retry), code_label=t["code"],
            ).encode()
            headers.append((b"content-type", b"text/html; charset=utf-8"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
