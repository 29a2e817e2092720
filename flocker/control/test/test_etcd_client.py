"""The etcd client (`flocker.control._etcd`) against real etcd processes."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import treq
from eliot.testing import LoggedMessage
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ...testtools.etcd import EtcdCluster, free_port
from .._etcd import (
    ENDPOINT_FAILED,
    MAX_TXN_OPS,
    UNAVAILABLE,
    EtcdClient,
    EtcdUnavailable,
    EventType,
    KeyValue,
    WatchEvent,
    WatchState,
    _Body,
    parse_etcd_url,
)

#: A hang guard for waiting on etcd, never a timing assertion.
HANG_GUARD = 30


async def value_of(client: EtcdClient, key: str) -> KeyValue:
    """The key's `KeyValue`, which must exist."""
    kv = await client.get(key)
    assert kv is not None, f"{key} does not exist"
    return kv


def guard(d: Deferred[Any]) -> Deferred[Any]:
    """``d``, failing instead of hanging if nothing happens for a long time."""
    return d.addTimeout(HANG_GUARD, reactor)


class TestParseEtcdURL:
    """`parse_etcd_url` turns ``etcd://`` URLs into client URLs."""

    def test_one_member(self) -> None:
        """One host:port gives one http URL."""
        assert parse_etcd_url("etcd://127.0.0.1:2379") == ["http://127.0.0.1:2379"]

    def test_several_members(self) -> None:
        """Comma-separated addresses give one URL each, in order."""
        assert parse_etcd_url("etcd://a:1,b:2,[::1]:3") == [
            "http://a:1",
            "http://b:2",
            "http://[::1]:3",
        ]

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:2379",
            "etcd://",
            "etcd://host",
            "etcd://host:0",
            "etcd://host:99999",
            "etcd://host:port",
            "etcd://a:1,,b:2",
            "etcd://a:1/path",
            "etcd://user@a:1",
        ],
    )
    def test_bad_url_refused(self, url: str) -> None:
        """Anything but etcd://host:port[,host:port…] is a ValueError naming it."""
        with pytest.raises(ValueError, match="etcd"):
            parse_etcd_url(url)


class TestStreamFraming:
    """The watch stream's lines are found whatever the chunks' boundaries."""

    def test_lines_across_chunks(self) -> None:
        """Lines split over chunks, and several in one chunk, arrive whole."""
        lines: list[bytes] = []
        body = _Body(lines.append)
        for chunk in (b'{"a":', b' 1}\n{"b": 2}\n\n{"c"', b": 3}\n", b'{"d": 4}'):
            body.dataReceived(chunk)
        body.connectionLost(Failure(ResponseDone()))
        assert lines == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}', b'{"d": 4}']
        assert body.done.called

    def test_whole_body(self) -> None:
        """Without a line callback the body is collected whole."""
        body = _Body()
        body.dataReceived(b"{\n")
        body.dataReceived(b"}")
        body.connectionLost(Failure(ResponseDone()))
        assert body.done.result == b"{\n}"


@pytest.fixture
def client(etcd_cluster: EtcdCluster) -> Any:
    """A client of a fresh one-member etcd, closed afterwards."""
    client = EtcdClient(reactor, etcd_cluster.endpoints)
    yield client
    pytest_twisted.blockon(client.close())


@pytest.mark.functional
class TestKeyValue:
    """Reads and writes of single keys and prefixes."""

    @pytest_twisted.ensureDeferred
    async def test_absent_key(self, client: EtcdClient) -> None:
        """A key never written reads as None."""
        assert await client.get("/nothing") is None

    @pytest_twisted.ensureDeferred
    async def test_put_then_get(self, client: EtcdClient) -> None:
        """A written value reads back with the revision the write returned."""
        revision = await client.put("/k", b"\x00value\xff")
        kv = await client.get("/k")
        assert kv == KeyValue(
            key="/k",
            value=b"\x00value\xff",
            mod_revision=revision,
            create_revision=revision,
            version=1,
            lease=0,
        )

    @pytest_twisted.ensureDeferred
    async def test_prefix(self, client: EtcdClient) -> None:
        """A prefix read returns the keys under it in order, not its neighbours."""
        for key in ("/p/b", "/p/a", "/pa", "/o"):
            last = await client.put(key, key.encode())
        found = await client.get_prefix("/p/")
        assert [kv.key for kv in found.kvs] == ["/p/a", "/p/b"]
        assert found.revision == last

    @pytest_twisted.ensureDeferred
    async def test_delete(self, client: EtcdClient) -> None:
        """Deleting removes one key; deleting a prefix removes all under it."""
        for key in ("/d/1", "/d/2", "/e"):
            await client.put(key, b"x")
        assert await client.delete("/e") == 1
        assert await client.delete("/e") == 0
        assert await client.delete_prefix("/d/") == 2
        assert (await client.get_prefix("/")).kvs == []

    @pytest_twisted.ensureDeferred
    async def test_create_only_if_absent(self, client: EtcdClient) -> None:
        """create writes a key that does not exist, and nothing otherwise."""
        assert await client.create("/c", b"first")
        assert not await client.create("/c", b"second")
        assert (await value_of(client, "/c")).value == b"first"

    @pytest_twisted.ensureDeferred
    async def test_compare_and_put(self, client: EtcdClient) -> None:
        """compare_and_put writes only over the expected mod revision."""
        revision = await client.put("/cas", b"a")
        assert not await client.compare_and_put("/cas", b"b", revision - 1)
        assert not await client.compare_and_put("/cas", b"b", 0)
        assert await client.compare_and_put("/cas", b"b", revision)
        assert not await client.compare_and_put("/cas", b"c", revision)
        assert (await value_of(client, "/cas")).value == b"b"

    @pytest_twisted.ensureDeferred
    async def test_put_many(self, client: EtcdClient) -> None:
        """put_many writes every key at one revision, attached to the lease."""
        lease = await client.grant_lease(30)
        revision = await client.put_many([("/m/a", b"1"), ("/m/b", b"2")], lease=lease)
        found = await client.get_prefix("/m/")
        assert [(kv.key, kv.value, kv.mod_revision, kv.lease) for kv in found.kvs] == [
            ("/m/a", b"1", revision, lease),
            ("/m/b", b"2", revision, lease),
        ]

    def test_put_many_refuses_more_than_etcd_takes(self, client: EtcdClient) -> None:
        """More writes than one etcd transaction takes are refused at once."""
        with pytest.raises(ValueError):
            client.put_many([(f"/k{i}", b"x") for i in range(MAX_TXN_OPS + 1)])

    @pytest_twisted.ensureDeferred
    async def test_delete_if(self, client: EtcdClient) -> None:
        """delete_if deletes only at the expected mod revision."""
        revision = await client.put("/del", b"a")
        assert not await client.delete_if("/del", revision + 1)
        assert await client.delete_if("/del", revision)
        assert await client.get("/del") is None


@pytest.mark.functional
class TestLeases:
    """Leases: keys that live only while their lease is kept alive."""

    @pytest_twisted.ensureDeferred
    async def test_key_with_lease(self, client: EtcdClient) -> None:
        """A key written with a lease says so, and the lease can be renewed."""
        lease = await client.grant_lease(30)
        await client.put("/leased", b"x", lease=lease)
        assert (await value_of(client, "/leased")).lease == lease
        assert 0 < await client.keep_alive(lease) <= 30

    @pytest_twisted.ensureDeferred
    async def test_expired_lease_deletes_its_keys(self, client: EtcdClient) -> None:
        """An unrenewed lease expires: its keys go and keep_alive answers 0."""
        lease = await client.grant_lease(1)
        assert await client.create("/short", b"x", lease=lease)
        deleted: Deferred[WatchEvent] = Deferred()
        start = (await value_of(client, "/short")).mod_revision

        def on_event(event: WatchEvent) -> None:
            if event.type is EventType.DELETE and not deleted.called:
                deleted.callback(event)

        watch = client.watch("/short", on_event, start_revision=start)
        try:
            await guard(deleted)
        finally:
            watch.stop()
        assert await client.get("/short") is None
        assert await client.keep_alive(lease) == 0

    @pytest_twisted.ensureDeferred
    async def test_revoke(self, client: EtcdClient) -> None:
        """Revoking a lease deletes its keys; revoking it again is harmless."""
        lease = await client.grant_lease(30)
        await client.put("/revoked", b"x", lease=lease)
        await client.revoke_lease(lease)
        await client.revoke_lease(lease)
        assert await client.get("/revoked") is None
        assert await client.keep_alive(lease) == 0


class _Events:
    """Collects watch events; `until` waits for a number of them."""

    def __init__(self) -> None:
        self.events: list[WatchEvent] = []
        self.compacted: list[int] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def __call__(self, event: WatchEvent) -> None:
        self.events.append(event)
        self._wake()

    def on_compacted(self, revision: int) -> None:
        self.compacted.append(revision)
        self._wake()

    def _wake(self) -> None:
        for n, d in list(self._waiting):
            if len(self.events) + len(self.compacted) >= n:
                self._waiting.remove((n, d))
                d.callback(None)

    def until(self, n: int) -> Deferred[None]:
        """Fires once ``n`` events (and compactions) arrived in all."""
        d: Deferred[None] = Deferred()
        self._waiting.append((n, d))
        self._wake()
        return guard(d)


@pytest.mark.functional
class TestWatch:
    """Watches report every change, in order, across broken streams."""

    @pytest_twisted.ensureDeferred
    async def test_sees_changes_in_order(self, client: EtcdClient) -> None:
        """A key watch reports puts and deletes of that key, in order."""
        start = await client.put("/w", b"0")
        events = _Events()
        watch = client.watch("/w", events, start_revision=start + 1)
        try:
            await client.put("/w", b"1")
            await client.put("/other", b"x")
            await client.delete("/w")
            await events.until(2)
        finally:
            watch.stop()
        changes = [(e.type, e.kv.value) for e in events.events]
        assert changes == [(EventType.PUT, b"1"), (EventType.DELETE, b"")]

    @pytest_twisted.ensureDeferred
    async def test_prefix_from_revision(self, client: EtcdClient) -> None:
        """A prefix watch from a past revision replays every change under it."""
        start = await client.put("/pw/a", b"a")
        await client.put("/elsewhere", b"x")
        await client.put("/pw/b", b"b")
        events = _Events()
        watch = client.watch("/pw/", events, prefix=True, start_revision=start)
        try:
            await events.until(2)
        finally:
            watch.stop()
        assert [(e.kv.key, e.kv.value) for e in events.events] == [
            ("/pw/a", b"a"),
            ("/pw/b", b"b"),
        ]

    @pytest_twisted.ensureDeferred
    async def test_stopped_watch_is_silent(self, client: EtcdClient) -> None:
        """After stop, the callback is not called again."""
        events = _Events()
        start = await client.put("/s", b"0")
        watch = client.watch("/s", events, start_revision=start)
        await events.until(1)
        watch.stop()
        await client.put("/s", b"1")
        await client.get("/s")
        assert [e.kv.value for e in events.events] == [b"0"]

    @pytest_twisted.ensureDeferred
    async def test_compacted_revision_reported(
        self, client: EtcdClient, etcd_cluster: EtcdCluster
    ) -> None:
        """A watch from a compacted revision says so and goes on from the oldest."""
        first = await client.put("/cw", b"old")
        last = await client.put("/cw", b"new")
        etcd_cluster.compact(last)
        events = _Events()
        watch = client.watch(
            "/cw", events, start_revision=first, on_compacted=events.on_compacted
        )
        try:
            await events.until(1)
            await client.put("/cw", b"newer")
            await events.until(3)
        finally:
            watch.stop()
        assert events.compacted == [last]
        assert [e.kv.value for e in events.events] == [b"new", b"newer"]


@pytest.mark.functional
class TestFailures:
    """Members that fail: other members serve, and no member means an error."""

    @pytest_twisted.ensureDeferred
    async def test_nothing_listening(self, eliot_logger: Any) -> None:
        """With no member listening, calls fail with EtcdUnavailable naming them."""
        endpoints = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
        client = EtcdClient(reactor, endpoints, timeout=1)
        try:
            with pytest.raises(EtcdUnavailable) as e:
                await guard(client.put("/k", b"v"))
        finally:
            await client.close()
        assert all(endpoint in str(e.value) for endpoint in endpoints)
        assert "\n" not in str(e.value)
        failed = LoggedMessage.of_type(eliot_logger.messages, ENDPOINT_FAILED)
        assert [m.message["endpoint"] for m in failed] == endpoints
        assert len(LoggedMessage.of_type(eliot_logger.messages, UNAVAILABLE)) == 1

    @pytest_twisted.ensureDeferred
    async def test_killed_member_skipped(
        self, make_etcd_cluster: Any, eliot_logger: Any
    ) -> None:
        """With one of three members killed, the client uses the others."""
        cluster = make_etcd_cluster(members=3)
        client = EtcdClient(reactor, cluster.endpoints)
        try:
            await client.put("/k", b"before")
            cluster.kill_member(0)
            await guard(client.put("/k", b"after"))
            assert (await value_of(client, "/k")).value == b"after"
            failed = LoggedMessage.of_type(eliot_logger.messages, ENDPOINT_FAILED)
            # (Others may have been in an election, without leader, too.)
            assert cluster.endpoints[0] in {m.message["endpoint"] for m in failed}
        finally:
            await client.close()

    @pytest_twisted.ensureDeferred
    async def test_member_without_leader_says_so(self, make_etcd_cluster: Any) -> None:
        """
        A member that lost its leader refuses with "no leader" (once it
        knows), rather than leaving the request to time out.
        """
        cluster = make_etcd_cluster(members=3)
        client = EtcdClient(reactor, cluster.endpoints[:1])
        try:
            await client.put("/k", b"v")
            cluster.kill_member(1)
            cluster.kill_member(2)
            reasons: list[str] = []
            while not any("no leader" in reason for reason in reasons):
                assert len(reasons) < HANG_GUARD, reasons
                with pytest.raises(EtcdUnavailable) as e:
                    await guard(client.get("/k"))
                reasons.append(e.value.reason)
        finally:
            await client.close()

    @pytest_twisted.ensureDeferred
    async def test_watch_leaves_member_without_leader(
        self, make_etcd_cluster: Any
    ) -> None:
        """
        A watch on a member that lost its leader is ended by it and moves
        on; once the others are back it reports changes again, missing none.
        """
        cluster = make_etcd_cluster(members=3)
        client = EtcdClient(reactor, cluster.endpoints)
        events = _Events()
        try:
            start = await client.put("/w", b"0")
            watch = client.watch("/w", events, start_revision=start)
            await events.until(1)
            watching = cluster.endpoints.index(watch.endpoint)
            others = [i for i in range(3) if i != watching]
            for i in others:
                cluster.kill_member(i)
            broken: Deferred[None] = Deferred()

            def check_broken() -> None:
                if watch.state is not WatchState.STREAMING:
                    broken.callback(None)
                else:
                    reactor.callLater(0.05, check_broken)

            check_broken()
            await guard(broken)
            for i in others:
                cluster.start_member(i)
            await guard(client.put("/w", b"1"))
            await events.until(2)
            watch.stop()
        finally:
            await client.close()
        assert [e.kv.value for e in events.events] == [b"0", b"1"]

    @pytest_twisted.ensureDeferred
    async def test_watch_survives_killed_member(self, make_etcd_cluster: Any) -> None:
        """A watch whose member is killed resumes on another, missing nothing."""
        cluster = make_etcd_cluster(members=3)
        client = EtcdClient(reactor, cluster.endpoints)
        events = _Events()
        try:
            start = await client.put("/w", b"0")
            watch = client.watch("/w", events, start_revision=start)
            await events.until(1)
            cluster.kill_member(cluster.endpoints.index(watch.endpoint))
            for n in range(1, 4):
                await guard(client.put("/w", str(n).encode()))
            await events.until(4)
            watch.stop()
        finally:
            await client.close()
        assert [e.kv.value for e in events.events] == [b"0", b"1", b"2", b"3"]


_JSON_HEADERS: dict[bytes | str, bytes | str] = {"Content-Type": "application/json"}


class _ApplyThenHangUp(Resource):
    """
    An HTTP front for one etcd member that passes each request on, then
    hangs up instead of answering: the request took effect, and its client
    cannot know.
    """

    isLeaf = True

    def __init__(self, member: str) -> None:
        """Pass requests on to ``member``'s client URL."""
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's
        self.member = member

    def render_POST(self, request: Any) -> Any:  # noqa: N802
        """Pass the request on, wait for the answer, and hang up."""
        d = treq.post(
            self.member + request.path.decode(),
            data=request.content.read(),
            headers=_JSON_HEADERS,
            persistent=False,
        )
        d.addCallback(treq.content)
        d.addBoth(lambda _: request.transport.abortConnection())
        return NOT_DONE_YET


@pytest.fixture
def hanging_up_front(etcd_cluster: EtcdCluster) -> Any:
    """The URL of an `_ApplyThenHangUp` before the cluster's member."""
    site: Any = Site(_ApplyThenHangUp(etcd_cluster.endpoints[0]))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    address: Any = port.getHost()
    yield f"http://127.0.0.1:{address.port}"
    pytest_twisted.blockon(port.stopListening())


@pytest.mark.functional
class TestUnknownOutcome:
    """Conditional writes that a member applied but never confirmed."""

    @pytest_twisted.ensureDeferred
    async def test_unconfirmed_writes_checked(
        self, etcd_cluster: EtcdCluster, hanging_up_front: str, eliot_logger: Any
    ) -> None:
        """
        A conditional write applied by a member that then hung up counts as
        done when the key holds what it wrote; one that was refused does not.
        """
        clients: list[EtcdClient] = []

        def first_through_the_front() -> EtcdClient:
            clients.append(
                EtcdClient(reactor, [hanging_up_front, etcd_cluster.endpoints[0]])
            )
            return clients[-1]

        try:
            assert await first_through_the_front().create("/u", b"mine")
            kv = await value_of(first_through_the_front(), "/u")
            assert kv.value == b"mine"
            assert not await first_through_the_front().compare_and_put(
                "/u", b"not mine", kv.mod_revision - 1
            )
            assert await first_through_the_front().compare_and_put(
                "/u", b"second", kv.mod_revision
            )
            kv = await value_of(first_through_the_front(), "/u")
            assert kv.value == b"second"
            assert not await first_through_the_front().delete_if(
                "/u", kv.mod_revision - 1
            )
            assert await first_through_the_front().delete_if("/u", kv.mod_revision)
            assert await first_through_the_front().get("/u") is None
        finally:
            for client in clients:
                await client.close()
        failed = LoggedMessage.of_type(eliot_logger.messages, ENDPOINT_FAILED)
        assert {m.message["endpoint"] for m in failed} == {hanging_up_front}
