"""A small etcd v3 client over etcd's JSON gateway, through treq.

Why this and not a gRPC client: etcd 3.4 serves its whole v3 API as JSON
over plain HTTP (``POST /v3/kv/range`` and friends, keys and values
base64-encoded, 64-bit integers as strings), and the control service needs
only a dozen calls of it.  treq is already Flocker's HTTP client, so the
store runs on the control service's own reactor with no new dependency, no
generated code and no second event loop.

Rules:

* **Every request has a deadline** (``timeout``, covering connection,
  answer and body).  A member that refuses, times out or answers "not
  available" (no leader, request timed out) is left for the next endpoint;
  while a member answers "not now" (an election), rounds over the members go
  on; `EtcdUnavailable` says which members and why, at once when every one
  refused the connection, else after at most ``len(endpoints) * timeout``
  seconds.  The endpoint that answered
  last is tried first next time.
* **Writes whose outcome is unknown are checked, not guessed**: a
  conditional write (`EtcdClient.compare_and_put`, `EtcdClient.create`,
  `EtcdClient.delete_if`) that may have been applied by a member that then
  failed is retried on the next member; if the retry's comparison fails,
  the key is read back, and the write counts as done when the key holds
  exactly what was written (a deletion: when the key is gone).
* **Watches outlive members**: `EtcdWatch` streams ``/v3/watch`` from one
  member and, when the stream breaks, reconnects to the next member (with a
  short back-off once all failed) from the revision after the last one it
  delivered, so no event is lost or repeated.  If that revision was
  compacted away, it says so (``on_compacted``) — the caller reloads — and
  goes on from the oldest revision etcd still has.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import attrs
import treq
from eliot import Field, MessageType
from treq.client import HTTPClient
from twisted.internet import error as internet_error
from twisted.internet.defer import (
    CancelledError,
    Deferred,
)
from twisted.internet.defer import (
    TimeoutError as DeferredTimeoutError,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss

__all__ = [
    "EtcdClient",
    "EtcdError",
    "EtcdUnavailable",
    "EtcdWatch",
    "EventType",
    "KeyValue",
    "Range",
    "WatchEvent",
    "WatchState",
    "parse_etcd_url",
]

# ---------------------------------------------------------------- logging

ENDPOINT = Field.for_types("endpoint", [str], "An etcd member's client URL.")
ENDPOINTS = Field.for_types(
    "endpoints", [str], "The etcd client URLs tried, comma-separated."
)
REQUEST = Field.for_types("request", [str], "The etcd gateway path, e.g. /v3/kv/put.")
REASON = Field.for_types("reason", [str], "Why, in words.")
KEY = Field.for_types("key", [str], "The etcd key (or prefix) watched.")
REVISION = Field.for_types("revision", [int], "An etcd revision.")

#: One member could not serve one request; the next is tried.
ENDPOINT_FAILED = MessageType(
    "flocker:control:etcd:endpoint_failed",
    [ENDPOINT, REQUEST, REASON],
    "An etcd member did not serve a request (refused, timed out, or had no "
    "leader); the client tries the next member.",
)

#: No member could serve a request.
UNAVAILABLE = MessageType(
    "flocker:control:etcd:unavailable",
    [ENDPOINTS, REQUEST, REASON],
    "No etcd member served a request; the caller gets EtcdUnavailable.",
)

#: A watch stream ended or could not start; it reconnects.
WATCH_BROKEN = MessageType(
    "flocker:control:etcd:watch_broken",
    [ENDPOINT, KEY, REVISION, REASON],
    "A watch stream from an etcd member broke; it resumes from the given "
    "revision on the next member.",
)

#: The revision a watch needed was compacted away.
WATCH_COMPACTED = MessageType(
    "flocker:control:etcd:watch_compacted",
    [KEY, REVISION],
    "Events a watch needed were compacted; the watcher reloads and the watch "
    "resumes from the oldest revision etcd still has.",
)

#: A watch callback raised; the watch goes on.
WATCH_CALLBACK_FAILED = MessageType(
    "flocker:control:etcd:watch_callback_failed",
    [KEY, REASON],
    "A watch's callback raised while handling an event; the watch goes on.",
)

# ---------------------------------------------------------------- values


class EtcdUnavailable(Exception):
    """
    No etcd member served a request within its deadline.

    ``str()`` is one line naming the endpoints and the last reason.
    """

    def __init__(self, endpoints: list[str], reason: str) -> None:
        """Remember which endpoints were tried and the last failure."""
        super().__init__(endpoints, reason)
        self.endpoints = list(endpoints)
        self.reason = reason

    def __str__(self) -> str:
        """Say which members were tried and why the last one failed."""
        return f"etcd is unavailable at {', '.join(self.endpoints)}: {self.reason}"


class EtcdError(Exception):
    """etcd answered a request with an error (a bad request, not an outage)."""

    def __init__(self, code: int, message: str) -> None:
        """Remember the gRPC status code and etcd's message."""
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        """The message etcd gave, with its code."""
        return f"etcd error {self.code}: {self.message}"


@attrs.frozen
class KeyValue:
    """
    One key as etcd holds it.

    :ivar key: the key.
    :ivar value: its value (empty for a deletion event).
    :ivar mod_revision: the revision of its last change.
    :ivar create_revision: the revision that created it.
    :ivar version: how many times it was written since created.
    :ivar lease: the id of the lease it is attached to, 0 for none.
    """

    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    version: int = 0
    lease: int = 0


@attrs.frozen
class Range:
    """The keys found by a range read, and the store's revision at the time."""

    kvs: list[KeyValue]
    revision: int


class EventType(enum.Enum):
    """What happened to a watched key."""

    PUT = "PUT"
    DELETE = "DELETE"


@attrs.frozen
class WatchEvent:
    """A key was written (`EventType.PUT`) or deleted, at ``kv.mod_revision``."""

    type: EventType
    kv: KeyValue


def parse_etcd_url(url: str) -> list[str]:
    """
    Turn ``etcd://host:port[,host:port…]`` into client URLs (``http://host:port``).

    IPv6 addresses go in brackets (``etcd://[::1]:2379``).

    :raise ValueError: naming what is wrong, for anything else.
    """
    prefix = "etcd://"
    if not url.startswith(prefix):
        raise ValueError(f"not an etcd URL (etcd://host:port[,host:port…]): {url!r}")
    rest = url[len(prefix) :].rstrip("/")
    if not rest:
        raise ValueError(f"no etcd address in {url!r} (etcd://host:port[,…])")
    endpoints = []
    for address in rest.split(","):
        parts = urlsplit(f"//{address}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if (
            not parts.hostname
            or port is None
            or not 0 < port < 65536
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise ValueError(
                f"bad etcd address {address!r} in {url!r}: expected host:port"
            )
        endpoints.append(f"http://{parts.netloc}")
    return endpoints


def _b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _unb64(data: str) -> bytes:
    return base64.b64decode(data)


def _prefix_end(prefix: str | bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    if isinstance(prefix, str):
        prefix = prefix.encode("utf-8")
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


def _key_value(d: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(d.get("key", "")).decode("utf-8", "surrogateescape"),
        value=_unb64(d.get("value", "")),
        mod_revision=int(d.get("mod_revision", 0)),
        create_revision=int(d.get("create_revision", 0)),
        version=int(d.get("version", 0)),
        lease=int(d.get("lease", 0)),
    )


#: The most operations etcd takes in one transaction (its ``--max-txn-ops``
#: default).
MAX_TXN_OPS = 128


def _revision(answer: dict[str, Any]) -> int:
    return int(answer.get("header", {}).get("revision", 0))


# ---------------------------------------------------------------- transport

#: gRPC codes meaning "this member cannot serve now" (try another one):
#: DEADLINE_EXCEEDED ("request timed out"), UNAVAILABLE ("no leader").
_MEMBER_TROUBLE = frozenset({4, 14})

#: Every request asks the member to refuse at once ("no leader") when it has
#: no leader — a member cut off from the others — instead of waiting out the
#: deadline; a watch on such a member is ended, so it moves to another.
#: (The gateway passes ``Grpc-Metadata-*`` headers on as gRPC metadata.)
_HEADERS: dict[bytes | str, bytes | str] = {
    "Content-Type": "application/json",
    "Grpc-Metadata-hasleader": "true",
}

#: Failures before anything was sent: the request certainly did nothing.
_NOT_SENT = (
    internet_error.ConnectError,
    internet_error.DNSLookupError,
)


class _MemberFailed(Exception):
    """One member did not serve a request (internal: the next one is tried)."""

    def __init__(self, reason: str, maybe_applied: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_applied = maybe_applied


class _Body(Protocol):
    """
    Receives a response body: whole (``done`` fires with the bytes) or as
    newline-delimited lines (each passed to ``on_line``; ``done`` fires
    with ``b""``).  Cancelling ``done`` aborts the connection.
    """

    def __init__(self, on_line: Callable[[bytes], None] | None = None) -> None:
        self.done: Deferred[bytes] = Deferred(self._abort)
        self._on_line = on_line
        self._chunks: list[bytes] = []

    def _abort(self, _: Deferred[bytes]) -> None:
        if self.transport is not None:
            # The response body's transport is a producer: this aborts it.
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)
        if self._on_line is None or b"\n" not in data:
            return
        *lines, rest = b"".join(self._chunks).split(b"\n")
        self._chunks = [rest]
        for line in lines:
            if self.done.called:  # stopped by a line
                return
            if line.strip():
                self._on_line(line)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.done.called:
            return
        if reason is not None and not reason.check(ResponseDone, PotentialDataLoss):
            self.done.errback(reason)
            return
        if self._on_line is None:
            self.done.callback(b"".join(self._chunks))
        else:
            rest = b"".join(self._chunks)
            if rest.strip():
                self._on_line(rest)
            if not self.done.called:
                self.done.callback(b"")


def _describe(failure: BaseException) -> str:
    if isinstance(failure, (ResponseFailed, ResponseNeverReceived)):
        reasons = "; ".join(
            r.getErrorMessage()
            for r in failure.reasons
        )
        return f"{type(failure).__name__}: {reasons}"
    return f"{type(failure).__name__}: {failure}"


def _error_in(answer: Any) -> tuple[int, str] | None:
    """The (gRPC code, message) of a gateway error answer, or None."""
    if not isinstance(answer, dict) or "error" not in answer:
        return None
    error = answer["error"]
    if isinstance(error, dict):  # the streaming endpoints' form
        code: Any = error.get("grpc_code", error.get("code", 2))
        return int(code), str(error.get("message", error))
    return int(answer.get("code", 2)), str(answer.get("message") or error)


# ---------------------------------------------------------------- the client


class EtcdClient:
    """
    An etcd v3 client for the JSON gateway of one cluster's members.

    Keys are ``str`` (UTF-8), values ``bytes``.  Every method returns a
    Deferred; each fails with `EtcdUnavailable` when no member served it in
    time, or `EtcdError` when etcd refused the request itself.

    :param reactor: the reactor (for connections and deadlines).
    :param endpoints: the members' client URLs (``http://host:port``; see
        `parse_etcd_url`).
    :param timeout: the deadline, in seconds, of one request to one member;
        a call gives up after ``len(endpoints) * timeout`` seconds at most.
    """

    #: The pause between two rounds over the members.
    PAUSE = 0.1

    def __init__(
        self, reactor: IReactorTime, endpoints: list[str], timeout: float = 2.0
    ) -> None:
        """Prepare a connection pool; nothing connects until the first call."""
        if not endpoints:
            raise ValueError("an etcd client needs at least one endpoint")
        self.reactor = reactor
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.retryAutomatically = False  # we choose where to retry
        self._http = HTTPClient(
            Agent(reactor, connectTimeout=timeout, pool=self._pool)
        )
        self._preferred = 0
        self._watches: set[EtcdWatch] = set()

    def __repr__(self) -> str:
        """The endpoints, for logs."""
        return f"<EtcdClient {','.join(self.endpoints)}>"

    # ---------------------------------------------------------- transport

    def _order(self) -> list[int]:
        """Endpoint indexes, starting with the one that answered last."""
        n = len(self.endpoints)
        return [(self._preferred + i) % n for i in range(n)]

    async def _post_once(
        self, endpoint: str, path: str, body: dict[str, Any], timeout: float
    ) -> Any:
        """One request to one member, within ``timeout`` seconds."""

        async def post() -> Any:
            response = await self._http.post(
                endpoint + path,
                data=json.dumps(body).encode("utf-8"),
                headers=_HEADERS,
            )
            reader = _Body()
            response.deliverBody(reader)
            data = await reader.done
            return response.code, data

        d = Deferred.fromCoroutine(post())
        d.addTimeout(timeout, self.reactor)
        try:
            code, data = await d
        except _NOT_SENT as e:
            raise _MemberFailed(_describe(e), maybe_applied=False) from e
        except (DeferredTimeoutError, CancelledError) as e:
            raise _MemberFailed(
                f"no answer within {timeout:g} s", maybe_applied=True
            ) from e
        except Exception as e:  # connection lost, reset, …
            raise _MemberFailed(_describe(e), maybe_applied=True) from e
        try:
            answer = json.loads(data)
        except ValueError as e:
            raise _MemberFailed(
                f"HTTP {code} with a body that is not JSON: {data[:80]!r}",
                maybe_applied=True,
            ) from e
        error = _error_in(answer)
        if error is not None:
            if error[0] in _MEMBER_TROUBLE:
                raise _MemberFailed(error[1], maybe_applied=True)
            raise EtcdError(*error)
        if code != 200:
            raise _MemberFailed(f"HTTP {code}", maybe_applied=True)
        return answer

    async def _call(self, path: str, body: dict[str, Any]) -> tuple[Any, bool]:
        """
        Send a request to the members in turn until one serves it.

        Rounds over the members go on while some member is there but cannot
        serve (an election in progress), until ``len(endpoints) * timeout``
        seconds have passed; a round in which every member refused the
        connection ends it at once.

        :return: the answer and whether an earlier member may have applied
            the request too.
        """
        deadline = self.reactor.seconds() + self.timeout * len(self.endpoints)
        maybe_applied = False
        reason = "no endpoint tried"
        while True:
            someone_there = False
            for i in self._order():
                remaining = deadline - self.reactor.seconds()
                if remaining <= 0:
                    break
                endpoint = self.endpoints[i]
                try:
                    answer = await self._post_once(
                        endpoint, path, body, min(self.timeout, remaining)
                    )
                except _MemberFailed as e:
                    maybe_applied = maybe_applied or e.maybe_applied
                    someone_there = someone_there or e.maybe_applied
                    reason = f"{endpoint}: {e.reason}"
                    ENDPOINT_FAILED.log(
                        endpoint=endpoint, request=path, reason=e.reason
                    )
                    continue
                self._preferred = i
                return answer, maybe_applied
            if not someone_there or deadline - self.reactor.seconds() <= self.PAUSE:
                break
            await deferLater(self.reactor, self.PAUSE)
        UNAVAILABLE.log(endpoints=",".join(self.endpoints), request=path, reason=reason)
        raise EtcdUnavailable(self.endpoints, reason)

    def _run(self, coroutine: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(coroutine)

    # ---------------------------------------------------------- key-value

    def get(self, key: str) -> Deferred[KeyValue | None]:
        """The key's current `KeyValue`, or ``None`` if it does not exist."""

        async def get() -> KeyValue | None:
            answer, _ = await self._call("/v3/kv/range", {"key": _b64(key)})
            kvs = answer.get("kvs", [])
            return _key_value(kvs[0]) if kvs else None

        return self._run(get())

    def get_with_revision(self, key: str) -> Deferred[Range]:
        """The key (none or one `KeyValue`) and the store's revision at the time."""

        async def get_with_revision() -> Range:
            answer, _ = await self._call("/v3/kv/range", {"key": _b64(key)})
            return Range(
                kvs=[_key_value(kv) for kv in answer.get("kvs", [])],
                revision=_revision(answer),
            )

        return self._run(get_with_revision())

    def get_prefix(self, prefix: str) -> Deferred[Range]:
        """Every key starting with ``prefix`` (in key order), and the revision."""

        async def get_prefix() -> Range:
            answer, _ = await self._call(
                "/v3/kv/range",
                {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))},
            )
            return Range(
                kvs=[_key_value(kv) for kv in answer.get("kvs", [])],
                revision=_revision(answer),
            )

        return self._run(get_prefix())

    def put(self, key: str, value: bytes, lease: int | None = None) -> Deferred[int]:
        """Write ``key`` unconditionally; fires with the write's revision."""

        async def put() -> int:
            body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
            if lease:
                body["lease"] = str(lease)
            answer, _ = await self._call("/v3/kv/put", body)
            return _revision(answer)

        return self._run(put())

    def put_many(
        self, items: list[tuple[str, bytes]], lease: int | None = None
    ) -> Deferred[int]:
        """
        Write every ``(key, value)`` of ``items`` in one transaction (all or
        none; at most `MAX_TXN_OPS` of them), attached to ``lease`` if given;
        fires with the revision written.
        """
        if len(items) > MAX_TXN_OPS:
            raise ValueError(f"at most {MAX_TXN_OPS} writes in one transaction")

        async def put_many() -> int:
            operations = []
            for key, value in items:
                put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
                if lease:
                    put["lease"] = str(lease)
                operations.append({"request_put": put})
            answer, _ = await self._call("/v3/kv/txn", {"success": operations})
            return _revision(answer)

        return self._run(put_many())

    def delete(self, key: str) -> Deferred[int]:
        """Delete ``key`` (nothing if absent); fires with how many were deleted."""

        async def delete() -> int:
            answer, _ = await self._call("/v3/kv/deleterange", {"key": _b64(key)})
            return int(answer.get("deleted", 0))

        return self._run(delete())

    def delete_prefix(self, prefix: str) -> Deferred[int]:
        """Delete every key starting with ``prefix``; fires with how many."""

        async def delete_prefix() -> int:
            answer, _ = await self._call(
                "/v3/kv/deleterange",
                {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))},
            )
            return int(answer.get("deleted", 0))

        return self._run(delete_prefix())

    async def _txn_if_mod_revision(
        self, key: str, mod_revision: int, operation: dict[str, Any]
    ) -> tuple[bool, bool]:
        """One transaction: ``operation`` if ``key``'s mod revision is as given."""
        answer, maybe_applied = await self._call(
            "/v3/kv/txn",
            {
                "compare": [
                    {
                        "key": _b64(key),
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": str(mod_revision),
                    }
                ],
                "success": [operation],
            },
        )
        return bool(answer.get("succeeded", False)), maybe_applied

    def compare_and_put(
        self, key: str, value: bytes, mod_revision: int, lease: int | None = None
    ) -> Deferred[bool]:
        """
        Write ``key`` only if its mod revision is ``mod_revision`` (0: only if
        it does not exist), in one transaction.

        :return: a Deferred firing with whether the write happened.
        """

        async def compare_and_put() -> bool:
            put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
            if lease:
                put["lease"] = str(lease)
            done, maybe_applied = await self._txn_if_mod_revision(
                key, mod_revision, {"request_put": put}
            )
            if done or not maybe_applied:
                return done
            # A member may have applied it before failing: look.
            now = await self.get(key)
            return (
                now is not None
                and now.value == value
                and now.mod_revision > mod_revision
                and now.lease == (lease or 0)
            )

        return self._run(compare_and_put())

    def create(
        self, key: str, value: bytes, lease: int | None = None
    ) -> Deferred[bool]:
        """Write ``key`` only if it does not exist; fires with whether it did."""
        return self.compare_and_put(key, value, 0, lease)

    def delete_if(self, key: str, mod_revision: int) -> Deferred[bool]:
        """
        Delete ``key`` only if its mod revision is ``mod_revision``.

        :return: a Deferred firing with whether it was deleted by this call.
        """

        async def delete_if() -> bool:
            done, maybe_applied = await self._txn_if_mod_revision(
                key, mod_revision, {"request_delete_range": {"key": _b64(key)}}
            )
            if done or not maybe_applied:
                return done
            return await self.get(key) is None

        return self._run(delete_if())

    # ---------------------------------------------------------- leases

    def grant_lease(self, ttl: int) -> Deferred[int]:
        """A new lease of ``ttl`` seconds; fires with its id."""

        async def grant() -> int:
            answer, _ = await self._call("/v3/lease/grant", {"TTL": str(int(ttl))})
            return int(answer["ID"])

        return self._run(grant())

    def keep_alive(self, lease_id: int) -> Deferred[int]:
        """
        Renew a lease once; fires with its remaining TTL in seconds, 0 if it
        has already expired (or was revoked, or never existed).
        """

        async def keep_alive() -> int:
            answer, _ = await self._call("/v3/lease/keepalive", {"ID": str(lease_id)})
            return int(answer.get("result", answer).get("TTL", 0))

        return self._run(keep_alive())

    def revoke_lease(self, lease_id: int) -> Deferred[None]:
        """Revoke a lease, deleting its keys; nothing if it is already gone."""

        async def revoke() -> None:
            try:
                await self._call("/v3/lease/revoke", {"ID": str(lease_id)})
            except EtcdError as e:
                if e.code != 5:  # NOT_FOUND: expired or revoked already
                    raise

        return self._run(revoke())

    # ---------------------------------------------------------- watches

    def watch(
        self,
        key: str,
        callback: Callable[[WatchEvent], object],
        prefix: bool = False,
        start_revision: int | None = None,
        on_compacted: Callable[[int], object] | None = None,
    ) -> EtcdWatch:
        """
        Call ``callback(event)`` for every change of ``key`` (or of every key
        under it, with ``prefix``), in revision order, until
        `EtcdWatch.stop`.

        :param start_revision: the first revision to report (older events
            are replayed); default: changes after the watch starts.
        :param on_compacted: called with the oldest revision etcd still has
            when events the watch needed were compacted away (the caller
            should reload what it watches); the watch then resumes from
            that revision.
        """
        watch = EtcdWatch(self, key, callback, prefix, start_revision, on_compacted)
        self._watches.add(watch)
        watch._start()
        return watch

    def close(self) -> Deferred[None]:
        """Stop every watch and close the pooled connections."""
        for watch in list(self._watches):
            watch.stop()
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed


class WatchState(enum.Enum):
    """Where an `EtcdWatch` is."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKING_OFF = "backing off"
    STOPPED = "stopped"


class _Compacted(Exception):
    """The watch's start revision was compacted (internal)."""

    def __init__(self, revision: int) -> None:
        super().__init__(revision)
        self.revision = revision


class EtcdWatch:
    """
    A running watch (see `EtcdClient.watch`); `stop` ends it.

    :ivar state: a `WatchState`.
    :ivar endpoint: the member it streams from (or last tried).
    :ivar next_revision: the revision it resumes from after a broken
        stream (``None`` until the first stream is set up, when the watch
        starts "from now").
    """

    #: Back-off after every member failed once, doubling up to the last.
    BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0)

    def __init__(
        self,
        client: EtcdClient,
        key: str,
        callback: Callable[[WatchEvent], object],
        prefix: bool,
        start_revision: int | None,
        on_compacted: Callable[[int], object] | None,
    ) -> None:
        """Remember what to watch; `EtcdClient.watch` starts it."""
        self._client = client
        self.key = key
        self._callback = callback
        self._prefix = prefix
        self._on_compacted = on_compacted
        self.next_revision = start_revision
        self.endpoint: str | None = None
        self.state = WatchState.CONNECTING
        self._pending: Deferred[Any] | None = None
        self.done: Deferred[None] | None = None

    def _start(self) -> None:
        self.done = Deferred.fromCoroutine(self._run())

    def stop(self) -> None:
        """End the watch: no callback is called after this returns."""
        if self.state is WatchState.STOPPED:
            return
        self.state = WatchState.STOPPED
        self._client._watches.discard(self)
        if self._pending is not None:
            self._pending.cancel()

    async def _wait(self, d: Deferred[Any]) -> Any:
        """Await ``d``, cancelled by `stop`."""
        self._pending = d
        try:
            return await d
        finally:
            self._pending = None

    def _request(self) -> dict[str, Any]:
        create: dict[str, Any] = {"key": _b64(self.key)}
        if self._prefix:
            create["range_end"] = _b64(_prefix_end(self.key))
        if self.next_revision is not None:
            create["start_revision"] = str(self.next_revision)
        return {"create_request": create}

    async def _run(self) -> None:
        client = self._client
        failures_in_a_row = 0
        while self.state is not WatchState.STOPPED:
            i = client._order()[0]
            endpoint = self.endpoint = client.endpoints[i]
            self.state = WatchState.CONNECTING
            try:
                await self._stream(endpoint)
                reason = "the stream ended"
            except _Compacted as e:
                WATCH_COMPACTED.log(key=self.key, revision=e.revision)
                self.next_revision = e.revision
                if self._on_compacted is not None:
                    self._deliver(self._on_compacted, e.revision)
                failures_in_a_row = 0
                continue
            except CancelledError:
                if self.state is WatchState.STOPPED:
                    return
                reason = f"no answer within {client.timeout} s"
            except EtcdError as e:
                reason = str(e)
            except Exception as e:
                reason = _describe(e)
            if self.state is WatchState.STOPPED:
                return
            if self.state is WatchState.STREAMING:
                failures_in_a_row = 0  # it worked until now: retry at once
            WATCH_BROKEN.log(
                endpoint=endpoint,
                key=self.key,
                revision=self.next_revision or 0,
                reason=reason,
            )
            # The next attempt goes to the next member.
            client._preferred = (i + 1) % len(client.endpoints)
            failures_in_a_row += 1
            if failures_in_a_row >= len(client.endpoints):
                step = min(
                    failures_in_a_row - len(client.endpoints), len(self.BACKOFF) - 1
                )
                self.state = WatchState.BACKING_OFF
                try:
                    await self._wait(
                        deferLater(client.reactor, self.BACKOFF[step])
                    )
                except CancelledError:
                    return

    async def _stream(self, endpoint: str) -> None:
        """Stream one watch from one member until it breaks or is stopped."""
        client = self._client
        request = client._http.post(
            endpoint + "/v3/watch",
            data=json.dumps(self._request()).encode("utf-8"),
            headers=_HEADERS,
        )
        request.addTimeout(client.timeout, client.reactor)
        response = await self._wait(request)
        if response.code != 200:
            body = await self._wait(treq.content(response))
            raise EtcdError(response.code, body[:200].decode("utf-8", "replace"))
        problem: list[BaseException] = []

        def on_line(line: bytes) -> None:
            try:
                self._line(line)
            except Exception as e:
                problem.append(e)
                reader.done.cancel()

        reader = _Body(on_line)
        response.deliverBody(reader)
        try:
            await self._wait(reader.done)
        except CancelledError:
            if problem:
                raise problem[0] from None
            raise

    def _line(self, line: bytes) -> None:
        """Handle one result line of the watch stream."""
        message = json.loads(line)
        error = _error_in(message)
        if error is not None:
            raise EtcdError(*error)
        result = message.get("result", {})
        if self.state is WatchState.STOPPED:
            return
        compact_revision = int(result.get("compact_revision", 0))
        if compact_revision:
            raise _Compacted(compact_revision)
        if result.get("canceled"):
            raise EtcdError(1, result.get("cancel_reason", "watch canceled by etcd"))
        self.state = WatchState.STREAMING
        if result.get("created") and self.next_revision is None:
            self.next_revision = _revision(result) + 1
        for event in result.get("events", []):
            if self.state is WatchState.STOPPED:
                return
            kv = _key_value(event["kv"])
            self.next_revision = kv.mod_revision + 1
            self._deliver(
                self._callback,
                WatchEvent(type=EventType(event.get("type", "PUT")), kv=kv),
            )

    def _deliver(self, callback: Callable[[Any], object], value: Any) -> None:
        try:
            callback(value)
        except Exception as e:
            WATCH_CALLBACK_FAILED.log(key=self.key, reason=repr(e))
