"""Functional test of failback on real ZFS: the old primary sets its
divergence aside and the new primary's increment brings it up to date
without a full resend.

Two nodes' dataset deployers (real ZFS backends on file pools, in-memory
roles) converge one pass at a time as in ``test_datasets.Cluster``; the
sender pumps streams from one backend into the other and refuses streams
into an exposed, fenced or diverged copy as the agent's receiver does.
Storage commands run one after the other (one zfs-fuse serves every pool).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from flocker.control import Dataset, Deployment, DeploymentState, Replication
from flocker.node import run_state_change
from flocker.node._roles import DIVERGED, FENCED, PRIMARY, REPLICA, MemoryRoles
from flocker.node.datasets import DatasetDeployer, DatasetMover
from flocker.node.test.test_datasets import DS, HOSTS, A, B
from flocker.volume.testtools import feed, stream_bytes
from flocker.volume.zfs import ZFSVolumeBackend

#: How much the primary writes before the failover.
DATA_SIZE = 8 * 1024 * 1024

CLONE = "5b7f0c1e-3a0d-4f3e-9a55-7d2b6c8e9f01"


class ZFSCluster:
    """Two nodes with real ZFS backends, converged one pass at a time."""

    def __init__(self, pools: dict[str, str]) -> None:
        self.backends = {n: ZFSVolumeBackend(reactor, pool) for n, pool in pools.items()}
        self.roles = {n: MemoryRoles() for n in pools}
        self.state = DeploymentState()
        #: (source, destination, base, bytes) of every stream sent.
        self.sent: list[tuple[str, str, str | None, int]] = []
        self.deployers = {
            n: DatasetDeployer(
                n,
                HOSTS[n],
                self.backends[n],
                self.roles[n],
                DatasetMover(self.backends[n], self.roles[n], self._sender(n)),
            )
            for n in pools
        }

    def _sender(self, source: str) -> Any:
        by_host = {host: n for n, host in HOSTS.items()}

        def send(dataset_id, snapshot, base, host, final, epoch=0):  # type: ignore[no-untyped-def]
            async def pump() -> int:
                target = by_host[host]
                if self.roles[target].get(dataset_id) in (PRIMARY, FENCED, DIVERGED):
                    raise RuntimeError("refused, as the receiver does")
                data = await stream_bytes(
                    await self.backends[source].send(dataset_id, snapshot, base)
                )
                sink = await self.backends[target].receive(dataset_id, base)
                feed(sink, data)
                await sink.finish()
                self.sent.append((source, target, base, len(data)))
                if final:
                    await self.backends[target].set_read_only(dataset_id, False)
                    self.roles[target].set(dataset_id, PRIMARY, epoch=epoch)
                elif self.roles[target].get(dataset_id) != PRIMARY:
                    self.roles[target].set(dataset_id, REPLICA, epoch=epoch)
                return len(data)

            return Deferred.fromCoroutine(pump())

        return send

    async def converge_node(self, node: str, configuration: Deployment) -> Any:
        """One pass on one node: discover, report, calculate, run, report."""
        deployer = self.deployers[node]
        local = await deployer.discover_state(self.state)
        self.state = self.state.update_node(local.shared_state_changes())
        change = deployer.calculate_changes(configuration, self.state, local)
        await run_state_change(change, deployer)
        local = await deployer.discover_state(self.state)
        self.state = self.state.update_node(local.shared_state_changes())
        return change

    async def path(self, node: str) -> str:
        """Where ``node``'s copy of DS is mounted."""
        info = await self.backends[node].get(DS)
        assert info.path is not None
        return str(info.path)


def write(path: str, name: str, data: bytes) -> None:
    """Write one file into a mounted dataset."""
    with open(os.path.join(path, name), "wb") as handle:
        handle.write(data)


def read(path: str) -> dict[str, bytes]:
    """The files of a mounted dataset."""
    found = {}
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as handle:
            found[name] = handle.read()
    return found


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_old_primary_rejoins_with_an_increment_on_zfs(make_zfs_pool: Any) -> None:
    """
    A writes 8 MiB, B receives it; the dataset fails over to B (epoch 1,
    failover snapshot B's newest, A kept as a standing replica); A wrote
    more meanwhile, B writes too.  A diverges, then rejoins: its
    divergence is in a set-aside snapshot named flocker-diverged-0-…, and
    B's next round reaches A as an increment far smaller than the dataset.
    """
    pools = {A: make_zfs_pool(size="1G").name, B: make_zfs_pool(size="1G").name}
    cluster = ZFSCluster(pools)
    configuration = (
        Deployment()
        .add_dataset(Dataset(dataset_id=DS), A)
        .set_replicas(DS, [B], replication=Replication(failover="automatic"))
    )
    for node in (B, A, A, B):  # B reports; A creates; A's first round; B reports
        await cluster.converge_node(node, configuration)
    write(await cluster.path(A), "bulk", os.urandom(DATA_SIZE))
    await cluster.converge_node(A, configuration)  # a round carries the bulk
    await cluster.converge_node(B, configuration)
    base = [s.name for s in await cluster.backends[B].list_snapshots(DS)][-1]
    write(await cluster.path(A), "late", b"written on A, never replicated")

    failed_over, _ = configuration.failover_dataset(
        DS, B, snapshots={DS: base}, keep_source=True
    )
    await cluster.converge_node(B, failed_over)  # promoted
    assert cluster.roles[B].get(DS) == PRIMARY
    write(await cluster.path(B), "after", b"written on B after the failover")
    await cluster.converge_node(A, failed_over)  # diverges
    assert cluster.roles[A].get(DS) == DIVERGED
    await cluster.converge_node(A, failed_over)  # rejoins
    assert (cluster.roles[A].get(DS), cluster.roles[A].epoch(DS)) == (REPLICA, 1)
    (kept,) = await cluster.backends[A].list_set_aside(DS)
    assert kept.name.startswith("flocker-diverged-0-")
    assert [s.name for s in await cluster.backends[A].list_snapshots(DS)][-1] == base

    cluster.sent.clear()
    await cluster.converge_node(B, failed_over)  # B's round to A
    ((source, target, from_base, size),) = cluster.sent
    assert (source, target, from_base) == (B, A, base)
    assert size < DATA_SIZE / 10, size
    await cluster.converge_node(A, failed_over)
    copy = await cluster.backends[A].clone(
        DS, [s.name for s in await cluster.backends[A].list_snapshots(DS)][-1], CLONE
    )
    assert copy.path is not None
    received = read(str(copy.path))
    assert received["after"] == b"written on B after the failover"
    assert "late" not in received
    await cluster.backends[A].destroy(CLONE)
    aside = await cluster.backends[A].clone(DS, kept.name, CLONE)
    assert aside.path is not None
    assert read(str(aside.path))["late"] == b"written on A, never replicated"
    await cluster.backends[A].destroy(CLONE)
