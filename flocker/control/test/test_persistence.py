"""Tests for flocker.control._persistence: the stores and ConfigurationService."""

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from _pytest.mark import ParameterSet
from eliot import MemoryLogger
from eliot.testing import LoggedAction, capture_logging
from pyrsistent import InvariantException
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.trial.unittest import SynchronousTestCase

from flocker.control import Application, Dataset, Deployment, UnknownDataset
from flocker.control._persistence import (
    CONFIGURATION_FILE,
    ConfigurationCorrupt,
    ConfigurationService,
    FileConfigurationStore,
    GenerationMismatch,
    MemoryConfigurationStore,
    StoredConfiguration,
    envelope,
    parse_envelope,
    write_durably,
)
from flocker.control.testtools import (
    example_deployment,
    make_configuration_store_tests,
)

from ._examples import DATASET_PG, EXAMPLE_DEPLOYMENT, FREE, NODE_A, NODE_B, PG


def _pool() -> Any:
    """The real reactor's thread pool."""
    return reactor.getThreadPool()  # type: ignore[attr-defined]


def memory_store(
    tmp_path: Path,
) -> tuple[MemoryConfigurationStore, Callable[[], MemoryConfigurationStore]]:
    store = MemoryConfigurationStore()
    return store, lambda: store


def file_store(
    tmp_path: Path,
) -> tuple[FileConfigurationStore, Callable[[], FileConfigurationStore]]:
    def open_store() -> FileConfigurationStore:
        return FileConfigurationStore(IReactorFromThreads(reactor), _pool(), tmp_path / "data")

    return open_store(), open_store


_MemoryContract: Any = make_configuration_store_tests(memory_store)
_FileContract: Any = make_configuration_store_tests(file_store)


class TestMemoryConfigurationStore(_MemoryContract):  # type: ignore[misc]  # made at runtime
    """The memory fake passes the IConfigurationStore contract."""


@pytest.mark.functional
class TestFileConfigurationStore(_FileContract):  # type: ignore[misc]  # made at runtime
    """The file store passes the IConfigurationStore contract on real files."""


# -- file store specifics ---------------------------------------------------------


def _envelope(
    generation: int = 1, configuration: Deployment | None = None, version: int = 1
) -> dict[str, Any]:
    from flocker.control import deployment_to_json

    return {
        "envelope_version": version,
        "generation": generation,
        "configuration": deployment_to_json(
            EXAMPLE_DEPLOYMENT if configuration is None else configuration
        ),
    }


def _corruptions() -> list[ParameterSet]:
    good = _envelope()
    bad_config = _envelope()
    bad_config["configuration"]["nodes"][NODE_A]["manifestations"][DATASET_PG][
        "primary"
    ] = False
    newer = _envelope()
    newer["configuration"]["format_version"] = 99
    return [
        pytest.param(b"", "not UTF-8 JSON", id="empty"),
        pytest.param(json.dumps(good).encode()[:-20], "not UTF-8 JSON", id="truncated"),
        pytest.param(b"\x00" * 64, "not UTF-8 JSON", id="zeros"),
        pytest.param(b"[]", "not a Flocker configuration", id="array"),
        pytest.param(
            json.dumps({**good, "x": 1}).encode(),
            "not a Flocker configuration",
            id="extra-key",
        ),
        pytest.param(
            json.dumps({**good, "envelope_version": 2}).encode(),
            "envelope version",
            id="envelope",
        ),
        pytest.param(
            json.dumps({**good, "generation": "1"}).encode(),
            "bad generation",
            id="generation-type",
        ),
        pytest.param(
            json.dumps({**good, "generation": 0}).encode(),
            "bad generation",
            id="generation-zero",
        ),
        pytest.param(
            json.dumps(bad_config).encode(), "not a live primary", id="invariant"
        ),
        pytest.param(
            json.dumps(newer).encode(), "newer than this Flocker", id="newer-format"
        ),
    ]


@pytest.mark.functional
@pytest.mark.parametrize("content, reason", _corruptions())
@pytest_twisted.ensureDeferred
async def test_corrupt_file_refused(tmp_path: Path, content: bytes, reason: str) -> None:
    """A damaged file fails load and save clearly; it is never treated as empty."""
    (tmp_path / CONFIGURATION_FILE).write_bytes(content)
    store = FileConfigurationStore(IReactorFromThreads(reactor), _pool(), tmp_path)
    with pytest.raises(ConfigurationCorrupt) as e:
        await store.load()
    assert reason in str(e.value)
    assert str(tmp_path / CONFIGURATION_FILE) in str(e.value)
    with pytest.raises(ConfigurationCorrupt):
        await store.save(Deployment(), 0)
    assert (tmp_path / CONFIGURATION_FILE).read_bytes() == content


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_file_layout(tmp_path: Path) -> None:
    """The store creates its directory privately and leaves only its JSON file."""
    directory = tmp_path / "a" / "b"
    (tmp_path / "a").mkdir()
    store = FileConfigurationStore(IReactorFromThreads(reactor), _pool(), directory)
    generation = await store.save(EXAMPLE_DEPLOYMENT, 0)
    assert os.listdir(directory) == [CONFIGURATION_FILE]
    assert directory.stat().st_mode & 0o777 == 0o700
    assert json.loads((directory / CONFIGURATION_FILE).read_bytes()) == _envelope(
        generation
    )


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_stale_temporary_files_removed(tmp_path: Path) -> None:
    """Temporary files left by a crash mid-write are removed on load."""
    (tmp_path / f".{CONFIGURATION_FILE}.abc.tmp").write_bytes(b"partial")
    store = FileConfigurationStore(IReactorFromThreads(reactor), _pool(), tmp_path)
    assert (await store.load()).generation == 0
    assert os.listdir(tmp_path) == []


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_stored_fixture_through_file_store(tmp_path: Path) -> None:
    """A file holding an envelope around a stored fixture loads as that deployment."""
    (tmp_path / CONFIGURATION_FILE).write_text(json.dumps(_envelope(5)))
    store = FileConfigurationStore(IReactorFromThreads(reactor), _pool(), tmp_path)
    stored = await store.load()
    assert stored == StoredConfiguration(generation=5, deployment=EXAMPLE_DEPLOYMENT)


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_file_store_logs(tmp_path: Path, eliot_logger: MemoryLogger) -> None:
    """Loads and saves are eliot actions naming the file and the generation."""
    from eliot.testing import LoggedAction

    from flocker.control._logging import LOAD_CONFIGURATION, SAVE_CONFIGURATION

    store = FileConfigurationStore(IReactorFromThreads(reactor), _pool(), tmp_path)
    await store.load()
    await store.save(EXAMPLE_DEPLOYMENT, 0)
    with pytest.raises(GenerationMismatch):
        await store.save(EXAMPLE_DEPLOYMENT, 0)
    [load] = LoggedAction.of_type(eliot_logger.messages, LOAD_CONFIGURATION)
    assert load.succeeded and load.end_message["generation"] == 0
    saved, refused = LoggedAction.of_type(eliot_logger.messages, SAVE_CONFIGURATION)
    assert saved.succeeded and saved.end_message["generation"] == 1
    assert saved.start_message["store"] == str(tmp_path / CONFIGURATION_FILE)
    assert not refused.succeeded


@pytest.mark.functional
def test_write_durably_failure_cleans_up(tmp_path: Path) -> None:
    """A write that fails leaves the old file and no temporary file behind."""
    path = tmp_path / "f"
    path.write_bytes(b"old")

    with pytest.raises(TypeError):
        write_durably(path, "text is not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


@pytest.mark.functional
def test_write_durably_replaces(tmp_path: Path) -> None:
    """write_durably replaces the file's content."""
    path = tmp_path / "f"
    write_durably(path, b"one")
    write_durably(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]


# -- ConfigurationService ------------------------------------------------------


def _add_pg(d: Deployment) -> Deployment:
    return d.add_dataset(PG, NODE_A)


class ConfigurationServiceTests(SynchronousTestCase):
    """ConfigurationService applies changes through its store, in order."""

    def setUp(self) -> None:
        self.store = MemoryConfigurationStore()
        self.service = ConfigurationService(self.store)
        self.seen: list[tuple[int, Deployment]] = []
        self.service.subscribe(lambda g, d: self.seen.append((g, d)))
        self.successResultOf(self.service.load())

    def test_not_loaded(self) -> None:
        """Using the service before load() is a clear error."""
        service = ConfigurationService(MemoryConfigurationStore())
        with self.assertRaises(RuntimeError):
            _ = service.deployment
        self.failureResultOf(service.change(_add_pg), RuntimeError)

    def test_load_reads_store(self) -> None:
        """load() takes the store's configuration and generation."""
        self.successResultOf(self.store.save(EXAMPLE_DEPLOYMENT, 0))
        service = ConfigurationService(self.store)
        self.assertEqual(
            self.successResultOf(service.load()),
            StoredConfiguration(generation=1, deployment=EXAMPLE_DEPLOYMENT),
        )
        self.assertEqual(
            (service.generation, service.deployment), (1, EXAMPLE_DEPLOYMENT)
        )

    def test_load_corrupt_fails(self) -> None:
        """A corrupt store fails load() instead of starting empty."""

        class Corrupt(MemoryConfigurationStore):
            def load(self) -> Deferred[StoredConfiguration]:
                from twisted.internet.defer import fail

                return fail(ConfigurationCorrupt("memory", "broken"))

        service = ConfigurationService(Corrupt())
        self.failureResultOf(service.load(), ConfigurationCorrupt)

    def test_change_saves_and_notifies(self) -> None:
        """A change is saved, becomes current and is told to subscribers."""
        result = self.successResultOf(self.service.change(_add_pg))
        expected = Deployment().add_dataset(PG, NODE_A)
        self.assertEqual(result, StoredConfiguration(generation=1, deployment=expected))
        self.assertEqual(self.successResultOf(self.store.load()), result)
        self.assertEqual(self.service.deployment, expected)
        self.assertEqual(self.seen, [(1, expected)])

    def test_change_waits_for_durability(self) -> None:
        """The change's result fires only after the store acknowledged the save."""
        pending: Deferred[None] = Deferred()

        class Slow(MemoryConfigurationStore):
            def save(self, deployment: Deployment, expected_generation: int) -> Deferred[int]:
                d = super().save(deployment, expected_generation)
                return pending.addCallback(lambda _: d).addCallback(lambda d2: d2)

        service = ConfigurationService(Slow())
        self.successResultOf(service.load())
        result = service.change(_add_pg)
        self.assertNoResult(result)
        self.assertEqual(service.generation, 0)
        pending.callback(None)
        self.assertEqual(self.successResultOf(result).generation, 1)

    def test_noop_change(self) -> None:
        """A change that changes nothing is not saved and not told."""
        result = self.successResultOf(self.service.change(lambda d: d))
        self.assertEqual(result.generation, 0)
        self.assertEqual(self.seen, [])

    def test_failing_change(self) -> None:
        """A change that raises fails and leaves everything unchanged."""
        self.successResultOf(self.service.change(_add_pg))
        for bad in (
            lambda d: d.move_dataset("aaaaaaaa-0000-4000-8000-00000000ffff", NODE_B),
            lambda d: d.update_dataset(DATASET_PG, maximum_size=-1),
        ):
            f = self.failureResultOf(self.service.change(bad))
            self.assertTrue(f.check(UnknownDataset, InvariantException))
        self.assertEqual(self.service.generation, 1)
        self.assertEqual(len(self.seen), 1)
        self.assertEqual(self.successResultOf(self.store.load()).generation, 1)

    def test_expected_generation(self) -> None:
        """A change expecting another generation is refused with GenerationMismatch."""
        self.successResultOf(self.service.change(_add_pg))
        f = self.failureResultOf(
            self.service.change(
                lambda d: d.delete_dataset(DATASET_PG), expected_generation=0
            ),
            GenerationMismatch,
        )
        self.assertEqual((f.value.expected, f.value.actual), (0, 1))
        result = self.successResultOf(
            self.service.change(
                lambda d: d.delete_dataset(DATASET_PG), expected_generation=1
            )
        )
        self.assertEqual(result.generation, 2)

    def test_other_writer_retried(self) -> None:
        """If another writer saved first, the change is re-applied on top of it."""
        other = Deployment().add_dataset(Dataset(dataset_id=DATASET_PG), NODE_B)
        self.successResultOf(self.store.save(other, 0))
        result = self.successResultOf(
            self.service.change(lambda d: d.add_dataset(FREE, NODE_A))
        )
        self.assertEqual(result.generation, 2)
        self.assertEqual(result.deployment, other.add_dataset(FREE, NODE_A))
        self.assertEqual(self.successResultOf(self.store.load()), result)

    def test_other_writer_with_expected_generation(self) -> None:
        """With an expected generation, another writer's save fails the change."""
        self.successResultOf(self.store.save(example_deployment(), 0))
        self.failureResultOf(
            self.service.change(_add_pg, expected_generation=0), GenerationMismatch
        )
        self.assertEqual(self.service.generation, 1)

    def test_subscribers_in_order(self) -> None:
        """Subscribers see every change in the order changes were made."""
        for n in range(3):
            self.service.change(lambda d, n=n: example_deployment(n))  # type: ignore[misc]
        self.assertEqual(self.seen, [(n + 1, example_deployment(n)) for n in range(3)])

    def test_failing_subscriber(self) -> None:
        """A subscriber that raises does not stop others or fail the change."""

        def boom(g: int, d: Deployment) -> None:
            raise ValueError("subscriber bug")

        self.service._subscribers.insert(0, boom)
        self.successResultOf(self.service.change(_add_pg))
        self.assertEqual(len(self.seen), 1)
        self.flushLoggedErrors(ValueError)

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_change_logged(self, logger: MemoryLogger) -> None:
        """Each change is an eliot action saying the generation and whether it changed."""
        from flocker.control._logging import CHANGE_CONFIGURATION

        self.successResultOf(self.service.change(_add_pg))
        self.successResultOf(self.service.change(lambda d: d))
        changes = LoggedAction.of_type(logger.messages, CHANGE_CONFIGURATION)
        self.assertEqual(
            [(a.end_message["generation"], a.end_message["changed"]) for a in changes],
            [(1, True), (1, False)],
        )

    def test_unsubscribe(self) -> None:
        """An unsubscribed function is no longer told."""
        seen: list[int] = []
        unsubscribe = self.service.subscribe(lambda g, d: seen.append(g))
        self.successResultOf(self.service.change(_add_pg))
        unsubscribe()
        self.successResultOf(
            self.service.change(lambda d: d.delete_dataset(DATASET_PG))
        )
        self.assertEqual(seen, [1])


class FollowingOtherWritersTests(SynchronousTestCase):
    """
    With a shared store, the configuration service serves what other control
    instances save: it adopts newer configurations and tells its subscribers.
    """

    def setUp(self) -> None:
        self.store = MemoryConfigurationStore()
        self.service = ConfigurationService(self.store)
        self.seen: list[tuple[int, Deployment]] = []
        self.service.subscribe(lambda g, d: self.seen.append((g, d)))
        self.successResultOf(self.service.load())

    def test_newer_configuration_adopted_and_told(self) -> None:
        """A newer generation becomes current and subscribers hear of it."""
        newer = StoredConfiguration(generation=3, deployment=example_deployment())
        self.assertTrue(self.successResultOf(self.service.adopt(newer)))
        self.assertEqual(
            (self.service.generation, self.service.deployment), (3, example_deployment())
        )
        self.assertEqual(self.seen, [(3, example_deployment())])

    def test_older_or_same_configuration_ignored(self) -> None:
        """A generation not newer than the current one (an echo) changes nothing."""
        self.successResultOf(self.service.change(_add_pg))
        echo = StoredConfiguration(generation=1, deployment=Deployment())
        self.assertFalse(self.successResultOf(self.service.adopt(echo)))
        self.assertEqual(self.service.generation, 1)
        self.assertEqual(len(self.seen), 1)

    def test_conflict_tells_subscribers_of_the_other_writers_configuration(self) -> None:
        """
        When a change finds another writer's newer configuration, subscribers
        hear of that configuration too, not only of the change made on top.
        """
        other = Deployment().add_dataset(Dataset(dataset_id=DATASET_PG), NODE_B)
        self.successResultOf(self.store.save(other, 0))
        self.successResultOf(self.service.change(lambda d: d.add_dataset(FREE, NODE_A)))
        self.assertEqual(
            self.seen, [(1, other), (2, other.add_dataset(FREE, NODE_A))]
        )

    def test_follow_adopts_what_the_store_reports(self) -> None:
        """`follow` subscribes `adopt` to a watchable store until stopped."""
        watchers: list[Callable[[StoredConfiguration], object]] = []

        class Watchable(MemoryConfigurationStore):
            def watch(
                self, callback: Callable[[StoredConfiguration], object]
            ) -> Callable[[], None]:
                watchers.append(callback)
                return lambda: watchers.remove(callback)

        service = ConfigurationService(Watchable())
        self.successResultOf(service.load())
        stop = service.follow()
        watchers[0](StoredConfiguration(generation=2, deployment=example_deployment()))
        self.assertEqual(service.generation, 2)
        stop()
        self.assertEqual(watchers, [])

    def test_follow_without_a_watchable_store(self) -> None:
        """A store only this service writes has nothing to follow."""
        self.service.follow()()


def _stored_with_application_named(name: str, replicas: int = 1) -> bytes:
    """
    A stored configuration holding one application running ``replicas``
    instances, renamed ``name`` in the bytes (as a Flocker before the
    reserved instance names, or before the limit on replicated names,
    wrote it).
    """
    deployment = Deployment().add_application(
        Application(name="placeholder", image="nginx", replicas=replicas), NODE_A
    )
    return envelope(deployment, 3).replace(b'"placeholder"', json.dumps(name).encode())


def test_stored_application_named_like_an_instance_is_refused_clearly() -> None:
    """
    A stored configuration holding an application named like an extra
    instance (``web..2``, allowed by older Flockers) is refused as
    unreadable, naming the store, the application and the rule, in one
    line: the control service stops with that message rather than start
    without the application.
    """
    with pytest.raises(ConfigurationCorrupt) as e:
        parse_envelope("configuration.json", _stored_with_application_named("web..2"))
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("stored configuration configuration.json is unreadable: ")
    assert "applications/web..2" in message
    assert "reserved for the extra instances Flocker runs" in message


def test_stored_application_with_two_dots_elsewhere_loads() -> None:
    """A stored application named with ``..`` not at the end (``my..app``) loads as it was."""
    stored = parse_envelope("configuration.json", _stored_with_application_named("my..app"))
    [(application, node)] = stored.deployment.all_applications()
    assert (application.name, node) == ("my..app", NODE_A)


def test_stored_replicated_application_with_a_long_name_loads() -> None:
    """
    A stored configuration holding an application running several
    instances under a name of 126 characters (allowed before replicated
    names were limited to 124) loads with it as it was, so the control
    service starts and keeps running it.
    """
    name = "w" * 126
    stored = parse_envelope("configuration.json", _stored_with_application_named(name, 3))
    [(application, node)] = stored.deployment.all_applications()
    assert (application, node) == (Application(name=name, image="nginx", replicas=3), NODE_A)
