"""The etcd configuration store against real etcd processes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from eliot.testing import LoggedMessage
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadpool import ThreadPool

from ...testtools.etcd import EtcdCluster, free_port
from .._etcd import WATCH_CALLBACK_FAILED, EtcdClient, EtcdUnavailable
from .._etcd_store import (
    ConfigurationAlreadyPresent,
    EtcdConfigurationStore,
    import_configuration,
)
from .._model import Deployment
from .._persistence import (
    ConfigurationCorrupt,
    FileConfigurationStore,
    GenerationMismatch,
    StoredConfiguration,
)
from ..testtools import example_deployment, make_configuration_store_tests

pytestmark = pytest.mark.functional

#: A hang guard for waiting on etcd, never a timing assertion.
HANG_GUARD = 30


def guard(d: Deferred[Any]) -> Deferred[Any]:
    """``d``, failing instead of hanging if nothing happens for a long time."""
    return d.addTimeout(HANG_GUARD, reactor)


@pytest.fixture
def make_client() -> Iterator[Callable[..., EtcdClient]]:
    """A factory of etcd clients, all closed after the test."""
    made: list[EtcdClient] = []

    def make(
        endpoints: list[str], timeout: float = 2.0, cls: type[EtcdClient] = EtcdClient
    ) -> EtcdClient:
        client = cls(reactor, endpoints, timeout=timeout)
        made.append(client)
        return client

    yield make
    for client in made:
        pytest_twisted.blockon(client.close())


#: The contract; its factory is replaced by the ``store_and_reopen`` fixture.
_Contract: Any = make_configuration_store_tests(lambda tmp_path: pytest.fail("unused"))


class TestEtcdConfigurationStore(_Contract):  # type: ignore[misc]  # made at runtime
    """EtcdConfigurationStore keeps the IConfigurationStore contract."""

    @pytest.fixture
    def store_and_reopen(
        self, etcd_cluster: EtcdCluster, make_client: Callable[..., EtcdClient]
    ) -> tuple[Any, Callable[[], Any]]:
        """A store on a fresh etcd; reopening makes another client and store."""

        def open_store() -> EtcdConfigurationStore:
            return EtcdConfigurationStore(make_client(etcd_cluster.endpoints))

        return open_store(), open_store


class _Seen:
    """Records what a store watch passes on; `until` waits for a number of them."""

    def __init__(self) -> None:
        self.stored: list[StoredConfiguration] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def __call__(self, stored: StoredConfiguration) -> None:
        self.stored.append(stored)
        self._wake()

    def _wake(self) -> None:
        for n, d in list(self._waiting):
            if len(self.stored) >= n:
                self._waiting.remove((n, d))
                d.callback(None)

    def until(self, n: int) -> Deferred[None]:
        """Fires once ``n`` configurations were passed on."""
        d: Deferred[None] = Deferred()
        self._waiting.append((n, d))
        self._wake()
        return guard(d)


class _LateClient(EtcdClient):
    """
    A real client whose first keyed read with revision is answered only after
    ``between`` ran: to a watch, what happened in between looks missed.
    """

    between: Callable[[], Any] | None = None

    def get_with_revision(self, key: str) -> Deferred[Any]:
        """The real read, delivered after ``between`` (the first time only)."""
        read = super().get_with_revision(key)
        between, self.between = self.between, None
        if between is None:
            return read

        async def late() -> Any:
            found = await read
            await between()
            return found

        return Deferred.fromCoroutine(late())


@pytest.fixture
def stores(
    etcd_cluster: EtcdCluster, make_client: Callable[..., EtcdClient]
) -> tuple[EtcdConfigurationStore, EtcdConfigurationStore]:
    """Two stores on one etcd, each with its own client (two control services)."""
    return (
        EtcdConfigurationStore(make_client(etcd_cluster.endpoints)),
        EtcdConfigurationStore(make_client(etcd_cluster.endpoints)),
    )


class TestSharedStore:
    """Several control services share one configuration."""

    @pytest_twisted.ensureDeferred
    async def test_two_writers_one_wins(self, stores: Any) -> None:
        """Two services saving from the same generation: exactly one succeeds."""
        a, b = stores
        base = await a.save(example_deployment(0), 0)
        results = await DeferredList(
            [a.save(example_deployment(1), base), b.save(example_deployment(2), base)],
            consumeErrors=True,
        )
        wins = [r for ok, r in results if ok]
        losses = [r for ok, r in results if not ok]
        assert len(wins) == 1 and len(losses) == 1
        assert losses[0].check(GenerationMismatch)
        winner = example_deployment(1 if results[0][0] else 2)
        for store in stores:
            stored = await store.load()
            assert (stored.generation, stored.deployment) == (wins[0], winner)

    @pytest_twisted.ensureDeferred
    async def test_other_writers_save_seen(self, stores: Any) -> None:
        """A save through one service is what the other loads and saves over."""
        a, b = stores
        generation = await a.save(example_deployment(1), 0)
        with pytest.raises(GenerationMismatch):
            await b.save(example_deployment(2), 0)
        stored = await b.load()
        assert stored.deployment == example_deployment(1)
        assert await b.save(example_deployment(2), stored.generation) > generation

    @pytest_twisted.ensureDeferred
    async def test_watch_sees_other_writer(self, stores: Any) -> None:
        """A watch reports the current configuration, then another writer's saves."""
        a, b = stores
        first = await b.save(example_deployment(1), 0)

        seen = _Seen()
        stop = a.watch(seen)
        try:
            await seen.until(1)
            second = await b.save(example_deployment(2), first)
            third = await b.save(example_deployment(3), second)
            await seen.until(3)
        finally:
            stop()
        assert [(s.generation, s.deployment) for s in seen.stored] == [
            (first, example_deployment(1)),
            (second, example_deployment(2)),
            (third, example_deployment(3)),
        ]

    @pytest_twisted.ensureDeferred
    async def test_watch_after_compaction(
        self, etcd_cluster: EtcdCluster, make_client: Callable[..., EtcdClient]
    ) -> None:
        """A watch that missed compacted changes passes on the newest configuration."""
        writer = EtcdConfigurationStore(make_client(etcd_cluster.endpoints))
        client = make_client(etcd_cluster.endpoints, cls=_LateClient)
        assert isinstance(client, _LateClient)
        watched = EtcdConfigurationStore(client)
        first = await writer.save(example_deployment(1), 0)

        async def write_and_compact() -> None:
            second = await writer.save(example_deployment(2), first)
            await writer.save(example_deployment(3), second)
            kv = await client.get(watched.key)
            assert kv is not None
            etcd_cluster.compact(kv.mod_revision)

        client.between = write_and_compact
        seen = _Seen()
        stop = watched.watch(seen)
        try:
            await seen.until(2)
        finally:
            stop()
        assert [(s.generation, s.deployment) for s in seen.stored] == [
            (first, example_deployment(1)),
            (first + 2, example_deployment(3)),
        ]

    @pytest_twisted.ensureDeferred
    async def test_watch_started_while_etcd_is_down(
        self, etcd_cluster: EtcdCluster, make_client: Callable[..., EtcdClient]
    ) -> None:
        """A watch started while etcd is down passes on saves once it is back."""
        writer = EtcdConfigurationStore(make_client(etcd_cluster.endpoints))
        watched = EtcdConfigurationStore(
            make_client(etcd_cluster.endpoints, timeout=0.5)
        )
        first = await writer.save(example_deployment(1), 0)
        etcd_cluster.kill_member(0)
        seen = _Seen()
        stop = watched.watch(seen)
        try:
            with pytest.raises(EtcdUnavailable):
                await guard(writer.load())  # the watch's first read failed too
            etcd_cluster.start_member(0)
            await seen.until(1)
            second = await writer.save(example_deployment(2), first)
            await seen.until(2)
        finally:
            stop()
        assert [s.generation for s in seen.stored] == [first, second]

    @pytest_twisted.ensureDeferred
    async def test_failing_callback_does_not_end_watch(
        self, stores: Any, eliot_logger: Any
    ) -> None:
        """A callback that raises or fails later is logged; the next change arrives."""
        a, b = stores
        seen = _Seen()

        def callback(stored: StoredConfiguration) -> Any:
            seen(stored)
            if stored.generation == 1:
                raise RuntimeError("subscriber bug")
            if stored.generation == 2:
                return fail(RuntimeError("asynchronous subscriber bug"))
            return None

        stop = a.watch(callback)
        try:
            await seen.until(1)
            first = await b.save(example_deployment(1), 0)
            await seen.until(2)
            second = await b.save(example_deployment(2), first)
            await seen.until(3)
            await b.save(example_deployment(3), second)
            await seen.until(4)
        finally:
            stop()
        assert [s.generation for s in seen.stored] == [0, 1, 2, 3]
        failed = LoggedMessage.of_type(eliot_logger.messages, WATCH_CALLBACK_FAILED)
        assert [m.message["reason"] for m in failed] == [
            "RuntimeError('subscriber bug')",
            "RuntimeError('asynchronous subscriber bug')",
        ]

    @pytest_twisted.ensureDeferred
    async def test_stopped_watch_is_silent(self, stores: Any) -> None:
        """After the watch is stopped, saves are not passed on."""
        a, b = stores
        seen = _Seen()
        stop = a.watch(seen)
        await seen.until(1)
        stop()
        await b.save(example_deployment(1), 0)
        await a.load()
        assert [s.generation for s in seen.stored] == [0]


class TestBadData:
    """What is in etcd but is no configuration this Flocker can read."""

    @pytest.mark.parametrize(
        "data, reason",
        [
            (b"\xff\xfe", "not UTF-8 JSON"),
            (b"[1, 2]", "not a Flocker configuration"),
            (
                json.dumps(
                    {"envelope_version": 2, "generation": 1, "configuration": {}}
                ).encode(),
                "unknown envelope version 2",
            ),
            (
                json.dumps(
                    {
                        "envelope_version": 1,
                        "generation": 3,
                        "configuration": {"format_version": 999},
                    }
                ).encode(),
                "newer than this Flocker",
            ),
            (
                json.dumps(
                    {"envelope_version": 1, "generation": 0, "configuration": {}}
                ).encode(),
                "bad generation",
            ),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_unreadable_is_corrupt(
        self, stores: Any, data: bytes, reason: str
    ) -> None:
        """Another format or version in the key fails load and save, naming it."""
        store = stores[0]
        await store.client.put(store.key, data)
        with pytest.raises(ConfigurationCorrupt, match=reason) as e:
            await store.load()
        assert store.key in str(e.value)
        with pytest.raises(ConfigurationCorrupt):
            await store.save(example_deployment(), 0)
        assert (await store.client.get(store.key)).value == data


@pytest.fixture
def file_store_directory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Saves deployments with a real FileConfigurationStore; yields its directory."""
    pool = ThreadPool(minthreads=1, maxthreads=1)
    pool.start()
    directory = tmp_path / "file-store"
    file_store = FileConfigurationStore(IReactorFromThreads(reactor), pool, directory)

    async def save(*deployments: Deployment) -> Path:
        generation = (await file_store.load()).generation
        for deployment in deployments:
            generation = await file_store.save(deployment, generation)
        return directory

    yield save
    pool.stop()


class TestImport:
    """Moving a file store's configuration into etcd, once."""

    @pytest_twisted.ensureDeferred
    async def test_import_into_empty(
        self, stores: Any, file_store_directory: Callable[..., Any]
    ) -> None:
        """An empty etcd takes the file's configuration at the file's generation."""
        directory = await file_store_directory(
            example_deployment(1), example_deployment(2)
        )
        store = stores[0]
        assert await import_configuration(store, directory) == 2
        stored = await stores[1].load()
        assert (stored.generation, stored.deployment) == (2, example_deployment(2))
        assert await store.save(example_deployment(3), 2) == 3

    @pytest_twisted.ensureDeferred
    async def test_import_of_the_file_itself(
        self, stores: Any, file_store_directory: Callable[..., Any]
    ) -> None:
        """The configuration file's path works as well as its directory."""
        directory = await file_store_directory(example_deployment(1))
        store = stores[0]
        assert await import_configuration(store, directory / "configuration.json") == 1
        assert (await store.load()).deployment == example_deployment(1)

    @pytest_twisted.ensureDeferred
    async def test_import_refused_over_a_configuration(
        self, stores: Any, file_store_directory: Callable[..., Any]
    ) -> None:
        """With a configuration already in etcd, nothing is imported."""
        directory = await file_store_directory(example_deployment(1))
        store = stores[0]
        generation = await store.save(example_deployment(5), 0)
        with pytest.raises(ConfigurationAlreadyPresent, match="refusing to import"):
            await import_configuration(store, directory)
        stored = await store.load()
        assert (stored.generation, stored.deployment) == (
            generation,
            example_deployment(5),
        )

    @pytest_twisted.ensureDeferred
    async def test_import_of_nothing(self, stores: Any, tmp_path: Path) -> None:
        """A directory without a configuration file is an error, not an empty import."""
        with pytest.raises(FileNotFoundError, match="no Flocker configuration"):
            await import_configuration(stores[0], tmp_path)
        assert await stores[0].client.get(stores[0].key) is None

    @pytest_twisted.ensureDeferred
    async def test_import_of_corrupt_file(self, stores: Any, tmp_path: Path) -> None:
        """An unreadable file is refused as corrupt, and nothing is written."""
        (tmp_path / "configuration.json").write_bytes(b"{")
        with pytest.raises(ConfigurationCorrupt, match="configuration.json"):
            await import_configuration(stores[0], tmp_path)
        assert await stores[0].client.get(stores[0].key) is None


class TestUnavailable:
    """Without etcd, loads and saves fail quickly and say so."""

    @pytest_twisted.ensureDeferred
    async def test_nothing_listening(
        self, make_client: Callable[..., EtcdClient]
    ) -> None:
        """With nothing on the port, load and save fail with EtcdUnavailable."""
        store = EtcdConfigurationStore(
            make_client([f"http://127.0.0.1:{free_port()}"], timeout=1)
        )
        with pytest.raises(EtcdUnavailable):
            await guard(store.load())
        with pytest.raises(EtcdUnavailable):
            await guard(store.save(example_deployment(), 0))

    @pytest_twisted.ensureDeferred
    async def test_killed_single_member(
        self, etcd_cluster: EtcdCluster, make_client: Callable[..., EtcdClient]
    ) -> None:
        """A store whose only member was killed fails with EtcdUnavailable."""
        store = EtcdConfigurationStore(make_client(etcd_cluster.endpoints, timeout=1))
        generation = await store.save(example_deployment(), 0)
        etcd_cluster.kill_member(0)
        with pytest.raises(EtcdUnavailable, match=etcd_cluster.endpoints[0]):
            await guard(store.load())
        with pytest.raises(EtcdUnavailable):
            await guard(store.save(example_deployment(1), generation))

    @pytest_twisted.ensureDeferred
    async def test_lost_quorum(
        self, make_etcd_cluster: Any, make_client: Callable[..., EtcdClient]
    ) -> None:
        """With two of three members killed, saves fail with EtcdUnavailable."""
        cluster = make_etcd_cluster(members=3)
        store = EtcdConfigurationStore(make_client(cluster.endpoints, timeout=1))
        generation = await store.save(example_deployment(), 0)
        cluster.kill_member(0)
        cluster.kill_member(1)
        with pytest.raises(EtcdUnavailable):
            await guard(store.save(example_deployment(1), generation))
        cluster.start_member(0)
        cluster.start_member(1)
        stored = await guard(store.load())
        assert stored.deployment == example_deployment()

    @pytest_twisted.ensureDeferred
    async def test_one_member_killed_keeps_serving(
        self, make_etcd_cluster: Any, make_client: Callable[..., EtcdClient]
    ) -> None:
        """A 3-member cluster with one member killed still loads and saves."""
        cluster = make_etcd_cluster(members=3)
        store = EtcdConfigurationStore(make_client(cluster.endpoints))
        generation = await store.save(example_deployment(1), 0)
        for member in (0, 1):  # first the member the client prefers, then another
            cluster.kill_member(member)
            stored = await guard(store.load())
            assert stored.generation == generation
            generation = await guard(
                store.save(example_deployment(member + 2), generation)
            )
            if member == 0:
                cluster.start_member(0)
        assert (await store.load()).deployment == example_deployment(3)
