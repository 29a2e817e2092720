"""Test helpers for the control service, for this and other packages' tests.

* `make_configuration_store_tests` — the `IConfigurationStore` contract suite,
  run against every store (the file store, the memory fake, later etcd).
* `example_deployment` — a small deployment touching most of the model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList
from zope.interface.verify import verifyObject

from ._model import (
    Application,
    AttachedVolume,
    Dataset,
    Deployment,
    Leases,
    Port,
    RestartOnFailure,
)
from ._persistence import GenerationMismatch, IConfigurationStore

__all__ = ["example_deployment", "make_configuration_store_tests"]

_NODE = "0b0b0b0b-0000-4000-8000-00000000000b"
_DATASET = "d0d0d0d0-0000-4000-8000-00000000000d"


def example_deployment(n: int = 0) -> Deployment:
    """A valid deployment with a dataset, an application and a lease; differs per ``n``."""
    dataset = Dataset(
        dataset_id=_DATASET, metadata={"name": f"example-{n}"}, maximum_size=1 + n
    )
    app = Application(
        name="app",
        image="busybox",
        ports=[Port(internal_port=80, external_port=8080)],
        volumes=[AttachedVolume(dataset_id=_DATASET, mountpoint="/data")],
        restart_policy=RestartOnFailure(maximum_retry_count=3),
    )
    deployment = Deployment().add_dataset(dataset, _NODE).add_application(app, _NODE)
    return deployment.set(leases=Leases().acquire(float(n), _DATASET, _NODE))


#: ``factory(tmp_path)`` returns ``(store, reopen)``: a store on fresh backing
#: storage, and a function giving another store on the same backing storage
#: (as a restarted control service would open it).
StoreFactory = Callable[[Path], tuple[Any, Callable[[], Any]]]


def make_configuration_store_tests(factory: StoreFactory) -> type:
    """
    Build the `IConfigurationStore` contract test class for one implementation.

    Subclass the result once per implementation (``class TestX(
    make_configuration_store_tests(f)): "..."``); mark it functional if the
    store touches real files or services.
    """

    class ConfigurationStoreTests:
        """The behaviour every `IConfigurationStore` provider has."""

        @pytest.fixture
        def store_and_reopen(self, tmp_path: Path) -> tuple[Any, Callable[[], Any]]:
            """A store on fresh backing storage, and how to reopen it."""
            return factory(tmp_path)

        @pytest.fixture
        def store(self, store_and_reopen: tuple[Any, Any]) -> Any:
            """A store on fresh backing storage."""
            return store_and_reopen[0]

        def test_interface(self, store: Any) -> None:
            """The store provides IConfigurationStore."""
            assert verifyObject(IConfigurationStore, store)

        @pytest_twisted.ensureDeferred
        async def test_empty(self, store: Any) -> None:
            """A store never saved to holds an empty Deployment at generation 0."""
            stored = await store.load()
            assert (stored.generation, stored.deployment) == (0, Deployment())

        @pytest_twisted.ensureDeferred
        async def test_save_then_load(self, store: Any) -> None:
            """A saved configuration loads back equal, at the returned generation."""
            generation = await store.save(example_deployment(), 0)
            assert generation > 0
            stored = await store.load()
            assert (stored.generation, stored.deployment) == (
                generation,
                example_deployment(),
            )

        @pytest_twisted.ensureDeferred
        async def test_generations_increase(self, store: Any) -> None:
            """Every save returns a greater generation than the one it replaced."""
            generation = 0
            for n in range(4):
                new = await store.save(example_deployment(n), generation)
                assert new > generation
                generation = new
            assert (await store.load()).deployment == example_deployment(3)

        @pytest_twisted.ensureDeferred
        async def test_stale_generation_refused(self, store: Any) -> None:
            """A save expecting an old generation fails and writes nothing."""
            generation = await store.save(example_deployment(1), 0)
            with pytest.raises(GenerationMismatch) as e:
                await store.save(example_deployment(2), 0)
            assert e.value.expected == 0
            stored = await store.load()
            assert (stored.generation, stored.deployment) == (
                generation,
                example_deployment(1),
            )

        @pytest_twisted.ensureDeferred
        async def test_future_generation_refused(self, store: Any) -> None:
            """A save expecting a generation the store never had fails."""
            with pytest.raises(GenerationMismatch):
                await store.save(example_deployment(), 7)
            assert (await store.load()).generation == 0

        @pytest_twisted.ensureDeferred
        async def test_concurrent_saves(self, store: Any) -> None:
            """Of two saves expecting the same generation, exactly one wins."""
            results = await DeferredList(
                [store.save(example_deployment(n), 0) for n in (1, 2)],
                consumeErrors=True,
            )
            wins = [r for ok, r in results if ok]
            losses = [r for ok, r in results if not ok]
            assert len(wins) == 1 and len(losses) == 1
            assert losses[0].check(GenerationMismatch)
            winner = example_deployment(1 if results[0][0] else 2)
            stored = await store.load()
            assert (stored.generation, stored.deployment) == (wins[0], winner)

        @pytest_twisted.ensureDeferred
        async def test_survives_reopen(self, store_and_reopen: Any) -> None:
            """Another store on the same backing storage sees the last save."""
            store, reopen = store_and_reopen
            first = await store.save(example_deployment(1), 0)
            second = await store.save(example_deployment(2), first)
            stored = await reopen().load()
            assert (stored.generation, stored.deployment) == (
                second,
                example_deployment(2),
            )

        @pytest_twisted.ensureDeferred
        async def test_reopened_store_continues(self, store_and_reopen: Any) -> None:
            """A reopened store accepts a save at the last generation, not at 0."""
            store, reopen = store_and_reopen
            generation = await store.save(example_deployment(1), 0)
            again = reopen()
            with pytest.raises(GenerationMismatch):
                await again.save(example_deployment(2), 0)
            assert await again.save(example_deployment(2), generation) > generation

    return ConfigurationStoreTests
