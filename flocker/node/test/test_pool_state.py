"""
Unit tests of the pool a dataset agent reports: its size and free room as the
backend gives them, whether it is full, and the datasets too large for it.
"""

from __future__ import annotations

from typing import Any

from eliot import MemoryLogger
from eliot.testing import capture_logging
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from flocker.control import DeploymentState, PoolState
from flocker.node._roles import MemoryRoles
from flocker.node.datasets import DatasetDeployer, DatasetMover
from flocker.node.test.test_datasets import DS, MIB, A, result
from flocker.volume import IReportsPoolSpace, PoolSpace
from flocker.volume.memory import MemoryVolumeBackend

OTHER = "aaaaaaaa-0000-4000-8000-0000000000a2"


@implementer(IReportsPoolSpace)
class PoolBackend(MemoryVolumeBackend):
    """An in-memory backend that says its pool has ``space``."""

    space = PoolSpace(size=100 * MIB, free=50 * MIB)

    def pool_space(self) -> Deferred[PoolSpace]:
        """The space set on the class or the instance."""
        return succeed(self.space)


def never_sends(*args: Any, **kwargs: Any) -> Deferred[int]:
    """A sender for a node that pushes nothing (never called)."""
    raise AssertionError("nothing is sent")


def reported_pool(backend: MemoryVolumeBackend) -> PoolState | None:
    """The pool a deployer over ``backend`` reports after one discovery."""
    roles = MemoryRoles()
    deployer = DatasetDeployer(
        A, "127.0.0.11", backend, roles, DatasetMover(backend, roles, never_sends)
    )
    local = result(deployer.discover_state(DeploymentState()))
    return local.shared_state_changes().pool


def test_pool_is_reported_with_the_datasets_too_large_for_it() -> None:
    """
    The pool's size and free room are reported as the backend gives them,
    with the datasets whose maximum size is larger than the pool.
    """
    backend = PoolBackend()
    result(backend.create(DS, maximum_size=200 * MIB))
    result(backend.create(OTHER, maximum_size=10 * MIB))
    assert reported_pool(backend) == PoolState(
        size=100 * MIB, free=50 * MIB, full=False, oversized=[DS]
    )


def full(pool: PoolState | None) -> bool:
    """Whether a reported pool is full (it must be reported)."""
    assert pool is not None
    return bool(pool.full)


def test_pool_with_less_than_a_hundredth_free_is_full() -> None:
    """Less than 1% free (or less than 1 MiB, whichever is more) is full."""
    backend = PoolBackend()
    backend.space = PoolSpace(size=1000 * MIB, free=9 * MIB)
    assert full(reported_pool(backend))
    backend.space = PoolSpace(size=1000 * MIB, free=11 * MIB)
    assert not full(reported_pool(backend))
    backend.space = PoolSpace(size=50 * MIB, free=MIB // 2)
    assert full(reported_pool(backend))


def test_a_backend_that_does_not_say_reports_no_pool() -> None:
    """A backend without `IReportsPoolSpace` leaves the pool unknown."""
    assert reported_pool(MemoryVolumeBackend()) is None



class Broken(PoolBackend):
    """A backend whose pool cannot be read."""

    def pool_space(self) -> Deferred[PoolSpace]:
        """Fail as a failing ``zfs get`` would."""
        return fail(RuntimeError("zfs get failed"))


class UnreadablePoolTests(SynchronousTestCase):
    """A pool that cannot be read."""

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_a_pool_that_cannot_be_read_does_not_stop_discovery(
        self, logger: MemoryLogger
    ) -> None:
        """A failing `pool_space` is logged and leaves the pool unknown; discovery goes on."""
        self.assertIsNone(reported_pool(Broken()))
        logger.flush_tracebacks(RuntimeError)
