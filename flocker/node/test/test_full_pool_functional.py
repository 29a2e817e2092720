"""
Functional test, on real ZFS, of a node whose pool one dataset fills: the
dataset can still be moved off it, and the nodes' states say what is wrong
(the full pool, the move into it that fails and why) until it is drained.

Two nodes' dataset deployers (real ZFS backends on small file pools) converge
one pass at a time as in ``test_failback_functional``; each pass runs through
the `ConvergenceProgress` the dataset agent's loop uses, and its report is
annotated as the agent's is.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from flocker.control import Dataset, Deployment, NodeState
from flocker.node._progress import ConvergenceProgress
from flocker.node.test.test_datasets import DS, A, B
from flocker.node.test.test_failback_functional import ZFSCluster, read, write
from flocker.volume.test.test_zfs_full_pool import MIB, POOL_SIZE, fill

#: A dataset on B that is to move to A while A's pool is full.
INCOMING = "aaaaaaaa-0000-4000-8000-0000000000e1"


class ProgressCluster(ZFSCluster):
    """`ZFSCluster` whose passes are recorded and reported as the agent's are."""

    def __init__(self, pools: dict[str, str]) -> None:
        """Also a `ConvergenceProgress` per node."""
        super().__init__(pools)
        self.progress = {n: ConvergenceProgress(reactor) for n in pools}

    async def _report(self, node: str) -> Any:
        local = await self.deployers[node].discover_state(self.state)
        report = self.progress[node].annotate(local.shared_state_changes())
        self.state = self.state.update_node(report)
        return local

    async def converge_node(self, node: str, configuration: Deployment) -> Any:
        """One pass: discover, report, calculate, run (failures recorded), report."""
        local = await self._report(node)
        change = self.deployers[node].calculate_changes(configuration, self.state, local)
        try:
            await self.progress[node].run(change, self.deployers[node])
        except Exception:
            pass  # recorded; the loop would retry after a backoff
        await self._report(node)
        return change

    def node(self, node: str) -> NodeState:
        """What ``node`` last reported."""
        return self.state.get_node(node)


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_a_full_pool_is_drained_and_reported(make_zfs_pool: Any) -> None:
    """
    A dataset with a maximum size of twice its node's pool fills it.  The
    node reports its pool full and the dataset oversized; a move of another
    dataset into it fails, and its sender reports that push failing with
    the reason; the full dataset still moves off the node with all its
    data, after which the move into the node goes through and no change is
    failing any more.
    """
    pool_a, pool_b = make_zfs_pool(POOL_SIZE), make_zfs_pool("512M")
    cluster = ProgressCluster({A: pool_a.name, B: pool_b.name})
    configuration = Deployment().add_dataset(
        Dataset(dataset_id=DS, maximum_size=256 * MIB), A
    ).add_dataset(Dataset(dataset_id=INCOMING), B)
    await cluster.converge_node(A, configuration)
    await cluster.converge_node(B, configuration)
    written = await deferToThread(fill, await cluster.path(A))
    incoming = await cluster.backends[B].get(INCOMING)
    write(incoming.path, "data", b"x" * (8 * MIB))

    moved = configuration.move_dataset(INCOMING, A)
    await cluster.converge_node(A, moved)
    pool = cluster.node(A).pool
    assert pool is not None and pool.full and list(pool.oversized) == [DS]
    await cluster.converge_node(B, moved)
    (failing,) = cluster.node(B).failing_changes
    assert (failing.dataset_id, failing.change, failing.count) == (
        INCOMING,
        "flocker:node:dataset:push",
        1,
    )
    assert "space" in failing.reason or "quota" in failing.reason, failing.reason

    drained = moved.move_dataset(DS, B)
    for _ in range(10):
        await cluster.converge_node(A, drained)
        await cluster.converge_node(B, drained)
        copies = {n: cluster.node(n).datasets or {} for n in (A, B)}
        if (
            DS in copies[B]
            and copies[B][DS].path is not None
            and DS not in copies[A]
            and INCOMING in copies[A]
            and copies[A][INCOMING].path is not None
        ):
            break
    else:
        raise AssertionError(f"never drained: {cluster.state}")
    assert os.path.getsize(os.path.join(copies[B][DS].path, "fill")) == written
    assert read(copies[A][INCOMING].path) == {"data": b"x" * (8 * MIB)}
    pool = cluster.node(A).pool
    assert pool is not None and not pool.full
    assert list(cluster.node(B).failing_changes) == []
    assert cluster.node(B).last_converged is not None
