"""
The `IFlockerAPIV1Client` contract suite, run against every implementation.

``make_iflockerapiv1client_tests(factory)`` returns a test class; subclass it
once per implementation.  ``factory()`` returns a `ClientFixture`: a client
of a fresh, empty cluster in which two nodes are known, plus the controls the
tests need (a clock for lease expiry, ``converge`` to make the reported
state match the configuration, ``flush`` to deliver in-memory I/O).  The
tests are synchronous: everything runs in memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from uuid import UUID, uuid4

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from ._contract_cloning import CloningContract
from ._contract_containers import ContainerUpdateContract
from ._interface import (
    BadRequest,
    ConfigurationChanged,
    Container,
    ContainerAlreadyExists,
    ContainerConflict,
    ContainerPort,
    DatasetAlreadyExists,
    DatasetConflict,
    DivergedCopy,
    FailoverRefused,
    FailoverResult,
    IFlockerAPIV1Client,
    LeaseAlreadyHeld,
    MountedDataset,
    Node,
    ReplicaState,
    Replication,
    UnknownContainer,
    UnknownDataset,
    UnknownEra,
    UnknownLease,
)

__all__ = [
    "ClientFixture",
    "ReportHealth",
    "make_iflockerapiv1client_tests",
    "result_of",
]

T = TypeVar("T")
MIB = 1024 * 1024


def _no_transfers(*args: Any) -> None:
    """A cluster whose agents cannot be driven (report transfers, disconnect)."""
    raise NotImplementedError("this fixture cannot drive the nodes' agents")


class ReportHealth(Protocol):
    """How a `ClientFixture` makes a node report a container's health."""

    def __call__(
        self,
        name: str,
        status: str,
        reason: str | None,
        node_uuid: UUID | None = None,
    ) -> None:
        """
        The node running an instance of container ``name`` (``node_uuid``,
        or the container's own node) reports its health at the container's
        current revision.
        """


def _no_health(
    name: str, status: str, reason: str | None, node_uuid: UUID | None = None
) -> None:
    """A cluster whose container agents cannot be driven."""
    raise NotImplementedError("this fixture cannot drive the nodes' agents")


@attrs.frozen
class ClientFixture:
    r"""
    A client of a fresh cluster, and how to drive that cluster.

    :ivar client: the `IFlockerAPIV1Client` provider under test.
    :ivar nodes: two known nodes; ``nodes[0]`` has address ``10.0.0.1`` and
        era `era`, ``nodes[1]`` address ``10.0.0.2``.
    :ivar era: ``nodes[0]``'s era.
    :ivar clock: the cluster's time (advance it to expire leases).
    :ivar converge: make the reported state what the configuration asks for
        (deleted datasets then leave the configuration); each standing
        replica reports a snapshot named ``replicated`` taken now; each
        instance of a container runs on its node (the container's own, then
        the nodes after it in the order of their UUIDs).
    :ivar heard_from: note that a node's dataset agent was heard from now
        (a failover without force is then refused for a while).
    :ivar flush: deliver pending in-memory I/O (a no-op for fakes).
    :ivar fence: make a node report its primary copies fenced (not
        exposed), as its dataset agent does after losing the control
        service, until the next ``converge``.
    :ivar report_transfers: make the nodes' agents report these
        `Transfer`\ s in progress, and the agents of the nodes given second
        not answer.
    :ivar disconnect_agent: make a node's dataset agent unreachable by the
        control service.
    :ivar report_health: make the node running a configured container
        (or one of its instances: ``node_uuid``) report its health
        (``"starting"``, ``"healthy"`` or ``"unhealthy"``, and the last
        failure's reason or ``None``) at its current revision, as its
        container agent does.
    """

    client: Any
    nodes: list[UUID]
    era: UUID
    clock: Clock
    converge: Callable[[], None]
    heard_from: Callable[[UUID], None]
    fence: Callable[[UUID], None]
    flush: Callable[[], None] = lambda: None
    report_transfers: Callable[..., None] = _no_transfers
    disconnect_agent: Callable[[UUID], None] = _no_transfers
    report_health: ReportHealth = _no_health


def result_of(fixture: ClientFixture, d: Deferred[T]) -> T:
    """The result of a Deferred that fires once in-memory I/O is delivered."""
    results: list[Any] = []
    d.addBoth(results.append)
    fixture.flush()
    assert results, "the Deferred did not fire"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]  # type: ignore[no-any-return]


def make_iflockerapiv1client_tests(factory: Callable[[], ClientFixture]) -> type:
    """Build the `IFlockerAPIV1Client` contract test class for one implementation."""

    class IFlockerAPIV1ClientTests(CloningContract, ContainerUpdateContract):
        """The behaviour every `IFlockerAPIV1Client` provider has."""

        @pytest.fixture
        def cluster(self) -> ClientFixture:
            """A client of a fresh cluster."""
            return factory()

        def run(self, cluster: ClientFixture, d: Deferred[T]) -> T:
            """The result of ``d``."""
            return result_of(cluster, d)

        def refused(
            self,
            cluster: ClientFixture,
            error: type,
            call: Callable[[], Deferred[Any]],
        ) -> None:
            """``call()`` fails with ``error`` and the configuration is unchanged."""
            before = self.snapshot(cluster)
            with pytest.raises(error):
                self.run(cluster, call())
            assert self.snapshot(cluster) == before

        def snapshot(self, cluster: ClientFixture) -> Any:
            """The whole configuration as the client sees it."""
            client = cluster.client
            return (
                self.run(cluster, client.list_datasets_configuration()),
                self.run(cluster, client.list_leases()),
                self.run(cluster, client.list_containers_configuration()),
                self.run(cluster, client.list_environments()),
            )

        def create(self, cluster: ClientFixture, **kwargs: Any) -> Any:
            """Create a dataset on node 0 (by default)."""
            kwargs.setdefault("primary", cluster.nodes[0])
            return self.run(cluster, cluster.client.create_dataset(**kwargs))

        # -- basics ----------------------------------------------------------

        def test_interface(self, cluster: ClientFixture) -> None:
            """The client provides IFlockerAPIV1Client."""
            assert verifyObject(IFlockerAPIV1Client, cluster.client)

        def test_version(self, cluster: ClientFixture) -> None:
            """The version is a non-empty string."""
            version = self.run(cluster, cluster.client.version())
            assert isinstance(version, str) and version

        def test_empty(self, cluster: ClientFixture) -> None:
            """A fresh cluster has no datasets, leases or containers."""
            configuration, leases, containers, environments = self.snapshot(cluster)
            assert (dict(configuration.datasets), leases, containers) == ({}, [], [])
            assert environments == []
            assert self.run(cluster, cluster.client.list_datasets_state()) == []

        def test_nodes(self, cluster: ClientFixture) -> None:
            """The known nodes are listed with their addresses."""
            nodes = self.run(cluster, cluster.client.list_nodes())
            assert sorted(nodes, key=lambda n: n.host) == [
                Node(uuid=cluster.nodes[0], host="10.0.0.1"),
                Node(uuid=cluster.nodes[1], host="10.0.0.2"),
            ]

        def test_node_by_era(self, cluster: ClientFixture) -> None:
            """A node is found by its era; an unknown era fails with UnknownEra."""
            found = self.run(cluster, cluster.client.node_by_era(cluster.era))
            assert found == cluster.nodes[0]
            with pytest.raises(UnknownEra):
                self.run(cluster, cluster.client.node_by_era(uuid4()))

        # -- datasets --------------------------------------------------------

        def test_create_dataset(self, cluster: ClientFixture) -> None:
            """A created dataset is returned and listed."""
            dataset_id = uuid4()
            dataset = self.create(
                cluster,
                dataset_id=dataset_id,
                maximum_size=64 * MIB,
                metadata={"name": "pg"},
            )
            assert (dataset.dataset_id, dataset.primary, dataset.maximum_size) == (
                dataset_id,
                cluster.nodes[0],
                64 * MIB,
            )
            assert (dict(dataset.metadata), dataset.deleted) == ({"name": "pg"}, False)
            listed = self.run(cluster, cluster.client.list_datasets_configuration())
            assert dict(listed.datasets) == {dataset_id: dataset}

        def test_create_generates_id(self, cluster: ClientFixture) -> None:
            """Without a dataset_id a new one is chosen for each dataset."""
            first = self.create(cluster)
            second = self.create(cluster)
            assert first.dataset_id != second.dataset_id
            assert first.maximum_size is None

        def test_create_duplicate(self, cluster: ClientFixture) -> None:
            """A taken dataset id fails with DatasetAlreadyExists."""
            dataset = self.create(cluster)
            self.refused(
                cluster,
                DatasetAlreadyExists,
                lambda: cluster.client.create_dataset(
                    cluster.nodes[1], dataset_id=dataset.dataset_id
                ),
            )

        def test_create_unknown_node(self, cluster: ClientFixture) -> None:
            """A primary that is not in the cluster fails with BadRequest."""
            self.refused(
                cluster, BadRequest, lambda: cluster.client.create_dataset(uuid4())
            )

        def test_create_too_small(self, cluster: ClientFixture) -> None:
            """A maximum size under 1 MiB fails with BadRequest."""
            self.refused(
                cluster,
                BadRequest,
                lambda: cluster.client.create_dataset(cluster.nodes[0], MIB - 1),
            )

        def test_move_dataset(self, cluster: ClientFixture) -> None:
            """Moving changes the primary and keeps everything else."""
            dataset = self.create(cluster, maximum_size=64 * MIB)
            moved = self.run(
                cluster,
                cluster.client.move_dataset(cluster.nodes[1], dataset.dataset_id),
            )
            assert moved == dataset.set(primary=cluster.nodes[1])
            listed = self.run(cluster, cluster.client.list_datasets_configuration())
            assert listed.datasets[dataset.dataset_id] == moved

        def test_move_unknown_dataset(self, cluster: ClientFixture) -> None:
            """Moving a dataset that does not exist fails with UnknownDataset."""
            self.refused(
                cluster,
                UnknownDataset,
                lambda: cluster.client.move_dataset(cluster.nodes[1], uuid4()),
            )

        def test_move_to_unknown_node(self, cluster: ClientFixture) -> None:
            """Moving to a node not in the cluster fails with BadRequest."""
            dataset = self.create(cluster)
            self.refused(
                cluster,
                BadRequest,
                lambda: cluster.client.move_dataset(uuid4(), dataset.dataset_id),
            )

        def test_move_deleted(self, cluster: ClientFixture) -> None:
            """A deleted dataset cannot be moved: DatasetConflict."""
            dataset = self.create(cluster)
            self.run(cluster, cluster.client.delete_dataset(dataset.dataset_id))
            self.refused(
                cluster,
                DatasetConflict,
                lambda: cluster.client.move_dataset(
                    cluster.nodes[1], dataset.dataset_id
                ),
            )

        def test_update_dataset(self, cluster: ClientFixture) -> None:
            """maximum_size and metadata can be replaced, the size removed."""
            dataset = self.create(cluster, maximum_size=64 * MIB)
            client = cluster.client
            updated = self.run(
                cluster,
                client.update_dataset(
                    dataset.dataset_id, maximum_size=128 * MIB, metadata={"a": "b"}
                ),
            )
            assert (updated.maximum_size, dict(updated.metadata)) == (
                128 * MIB,
                {"a": "b"},
            )
            cleared = self.run(
                cluster, client.update_dataset(dataset.dataset_id, maximum_size=None)
            )
            assert (cleared.maximum_size, dict(cleared.metadata)) == (None, {"a": "b"})

        def test_update_unknown(self, cluster: ClientFixture) -> None:
            """Updating a dataset that does not exist fails with UnknownDataset."""
            self.refused(
                cluster,
                UnknownDataset,
                lambda: cluster.client.update_dataset(uuid4(), metadata={}),
            )

        def test_delete_dataset(self, cluster: ClientFixture) -> None:
            """Deleting marks the dataset deleted, idempotently."""
            dataset = self.create(cluster)
            deleted = self.run(
                cluster, cluster.client.delete_dataset(dataset.dataset_id)
            )
            assert deleted == dataset.set(deleted=True)
            again = self.run(cluster, cluster.client.delete_dataset(dataset.dataset_id))
            assert again == deleted
            listed = self.run(cluster, cluster.client.list_datasets_configuration())
            assert listed.datasets[dataset.dataset_id].deleted

        def test_delete_unknown(self, cluster: ClientFixture) -> None:
            """Deleting a dataset that does not exist fails with UnknownDataset."""
            self.refused(
                cluster, UnknownDataset, lambda: cluster.client.delete_dataset(uuid4())
            )

        def test_deleted_dataset_leaves_after_convergence(
            self, cluster: ClientFixture
        ) -> None:
            """Once the cluster converged, a deleted dataset is gone entirely."""
            dataset = self.create(cluster)
            kept = self.create(cluster)
            cluster.converge()
            self.run(cluster, cluster.client.delete_dataset(dataset.dataset_id))
            cluster.converge()
            listed = self.run(cluster, cluster.client.list_datasets_configuration())
            assert list(listed.datasets) == [kept.dataset_id]
            state = self.run(cluster, cluster.client.list_datasets_state())
            assert [s.dataset_id for s in state] == [kept.dataset_id]

        def test_dataset_state(self, cluster: ClientFixture) -> None:
            """After convergence each dataset is reported mounted on its primary."""
            dataset = self.create(cluster, maximum_size=64 * MIB)
            cluster.converge()
            (state,) = self.run(cluster, cluster.client.list_datasets_state())
            assert (state.dataset_id, state.primary, state.maximum_size) == (
                dataset.dataset_id,
                cluster.nodes[0],
                64 * MIB,
            )
            assert state.path is not None

        # -- standing replicas and failover -----------------------------------

        def test_create_with_replicas(self, cluster: ClientFixture) -> None:
            """A dataset created with replicas and replication settings has them."""
            dataset = self.create(
                cluster,
                replicas=[cluster.nodes[1]],
                replication=Replication(interval_seconds=30),
            )
            assert list(dataset.replicas) == [cluster.nodes[1]]
            assert dataset.replication == Replication(interval_seconds=30)
            assert dataset.epoch == 0
            listed = self.run(cluster, cluster.client.list_datasets_configuration())
            assert listed.datasets[dataset.dataset_id] == dataset

        def test_dataset_without_replication(self, cluster: ClientFixture) -> None:
            """A dataset created without replicas has none, default settings, epoch 0."""
            dataset = self.create(cluster)
            assert (list(dataset.replicas), dataset.replication, dataset.epoch) == (
                [],
                Replication(),
                0,
            )

        def test_update_replicas(self, cluster: ClientFixture) -> None:
            """Replicas are replaced; replication keys not named keep their values."""
            dataset = self.create(
                cluster,
                replicas=[cluster.nodes[1]],
                replication={"interval_seconds": 30},
            )
            client = cluster.client
            updated = self.run(
                cluster,
                client.update_dataset(
                    dataset.dataset_id, replication={"failover": "automatic"}
                ),
            )
            assert updated.replication == Replication(
                interval_seconds=30, failover="automatic"
            )
            assert list(updated.replicas) == [cluster.nodes[1]]
            cleared = self.run(
                cluster, client.update_dataset(dataset.dataset_id, replicas=[])
            )
            assert list(cleared.replicas) == []

        def test_bad_replicas(self, cluster: ClientFixture) -> None:
            """Bad replica sets and replication settings fail with BadRequest."""
            dataset = self.create(cluster)
            client = cluster.client
            for changes in (
                {"replicas": [cluster.nodes[0]]},
                {"replicas": [cluster.nodes[1], cluster.nodes[1]]},
                {"replicas": [uuid4()]},
                {"replication": {"interval_seconds": -1}},
                {"replication": {"every": 3}},
            ):
                self.refused(
                    cluster,
                    BadRequest,
                    functools.partial(
                        client.update_dataset, dataset.dataset_id, **changes
                    ),
                )
            self.refused(
                cluster,
                BadRequest,
                lambda: client.create_dataset(
                    cluster.nodes[0], replicas=[cluster.nodes[0]]
                ),
            )

        def test_move_to_replica_swaps(self, cluster: ClientFixture) -> None:
            """Moving to a replica's node makes the old primary a replica."""
            dataset = self.create(cluster, replicas=[cluster.nodes[1]])
            moved = self.run(
                cluster,
                cluster.client.move_dataset(cluster.nodes[1], dataset.dataset_id),
            )
            assert (moved.primary, list(moved.replicas)) == (
                cluster.nodes[1],
                [cluster.nodes[0]],
            )
            assert moved.epoch == 0

        def test_replica_state_lag(self, cluster: ClientFixture) -> None:
            """The state lists each reported replica, its newest snapshot and lag."""
            dataset = self.create(cluster, replicas=[cluster.nodes[1]])
            cluster.converge()
            taken = cluster.clock.seconds()
            cluster.clock.advance(3)
            (state,) = self.run(cluster, cluster.client.list_datasets_state())
            assert state.dataset_id == dataset.dataset_id
            assert list(state.replicas) == [
                ReplicaState(
                    node_uuid=cluster.nodes[1],
                    last_snapshot="replicated",
                    replicated_at=taken,
                    lag_seconds=3.0,
                )
            ]

        def test_failover(self, cluster: ClientFixture) -> None:
            """A failover promotes the replica and says where its data starts."""
            dataset = self.create(cluster, replicas=[cluster.nodes[1]])
            cluster.converge()
            taken = cluster.clock.seconds()
            cluster.clock.advance(2)
            result = self.run(
                cluster,
                cluster.client.failover_dataset(dataset.dataset_id, cluster.nodes[1]),
            )
            assert result == FailoverResult(
                dataset_id=dataset.dataset_id,
                primary=cluster.nodes[1],
                epoch=1,
                datasets=[dataset.dataset_id],
                snapshot="replicated",
                snapshot_created=taken,
                data_loss_window_seconds=2.0,
            )
            listed = self.run(cluster, cluster.client.list_datasets_configuration())
            after = listed.datasets[dataset.dataset_id]
            assert (after.primary, after.epoch, list(after.replicas)) == (
                cluster.nodes[1],
                1,
                [],
            )
            assert after.failover_snapshot == "replicated"

        def test_move_waits_for_the_new_primary_after_a_failover(
            self, cluster: ClientFixture
        ) -> None:
            """
            Right after a failover, moving the dataset is refused (409),
            changing nothing, until the new primary reports taking it up.
            """
            dataset = self.create(cluster, replicas=[cluster.nodes[1]])
            cluster.converge()
            cluster.clock.advance(60)
            self.run(cluster, cluster.client.failover_dataset(dataset.dataset_id, cluster.nodes[1]))
            before = self.snapshot(cluster)
            with pytest.raises(DatasetConflict, match="has not reported taking it up yet"):
                self.run(
                    cluster, cluster.client.move_dataset(cluster.nodes[0], dataset.dataset_id)
                )
            assert self.snapshot(cluster) == before
            cluster.converge()
            # Taken up now: a move is no longer refused for that reason (the
            # only other node keeps a diverged copy, which may refuse it).
            try:
                moved = self.run(
                    cluster, cluster.client.move_dataset(cluster.nodes[0], dataset.dataset_id)
                )
            except DatasetConflict as error:
                assert "taking it up" not in str(error)
            else:
                assert moved.primary == cluster.nodes[0]

        def test_no_failover_snapshot_before_failover(
            self, cluster: ClientFixture
        ) -> None:
            """A dataset never failed over has no failover snapshot."""
            dataset = self.create(cluster, replicas=[cluster.nodes[1]])
            assert dataset.failover_snapshot is None

        def test_fenced_primary(self, cluster: ClientFixture) -> None:
            """
            A primary whose node fenced itself is listed fenced, without a
            path, and its node lists the dataset as fenced.
            """
            dataset = self.create(cluster, replicas=[cluster.nodes[1]])
            cluster.converge()
            cluster.fence(cluster.nodes[0])
            (state,) = self.run(cluster, cluster.client.list_datasets_state())
            assert (state.primary, state.fenced, state.path) == (
                cluster.nodes[0],
                True,
                None,
            )
            nodes = self.run(cluster, cluster.client.list_nodes())
            fenced = {n.uuid: list(n.fenced) for n in nodes}
            assert fenced == {
                cluster.nodes[0]: [dataset.dataset_id],
                cluster.nodes[1]: [],
            }
            cluster.converge()
            (state,) = self.run(cluster, cluster.client.list_datasets_state())
            assert not state.fenced and state.path is not None

        def test_failover_takes_container(self, cluster: ClientFixture) -> None:
            """The container using the dataset moves with the failover."""
            dataset = self.create(cluster, replicas=[cluster.nodes[1]])
            volumes = [MountedDataset(dataset_id=dataset.dataset_id, mountpoint="/d")]
            client = cluster.client
            self.run(
                cluster,
                client.create_container(self.container(cluster, volumes=volumes)),
            )
            cluster.converge()
            self.run(
                cluster, client.failover_dataset(dataset.dataset_id, cluster.nodes[1])
            )
            (container,) = self.run(cluster, client.list_containers_configuration())
            assert container.node_uuid == cluster.nodes[1]

        def test_failover_refused(self, cluster: ClientFixture) -> None:
            """No replica, no snapshot yet, or an unknown dataset: refused."""
            dataset = self.create(cluster, replicas=[cluster.nodes[1]])
            client = cluster.client
            self.refused(
                cluster,
                FailoverRefused,
                lambda: client.failover_dataset(dataset.dataset_id, cluster.nodes[1]),
            )
            cluster.converge()
            self.refused(
                cluster,
                FailoverRefused,
                lambda: client.failover_dataset(dataset.dataset_id, cluster.nodes[0]),
            )
            self.refused(
                cluster,
                UnknownDataset,
                lambda: client.failover_dataset(uuid4(), cluster.nodes[1]),
            )

        def test_failover_while_primary_alive(self, cluster: ClientFixture) -> None:
            """A primary heard from just now is failed over only with force."""
            dataset = self.create(cluster, replicas=[cluster.nodes[1]])
            cluster.converge()
            cluster.heard_from(cluster.nodes[0])
            client = cluster.client
            self.refused(
                cluster,
                FailoverRefused,
                lambda: client.failover_dataset(dataset.dataset_id, cluster.nodes[1]),
            )
            with pytest.raises(FailoverRefused) as refusal:
                self.run(
                    cluster,
                    client.failover_dataset(dataset.dataset_id, cluster.nodes[1]),
                )
            # Both clients pass on the control service's words (the CLI
            # rewrites "pass force" for its own option).
            assert (
                "may still be serving the dataset; wait, or pass force to fail over anyway"
                in (refusal.value.description)
            )
            result = self.run(
                cluster,
                client.failover_dataset(
                    dataset.dataset_id, cluster.nodes[1], force=True
                ),
            )
            assert result.primary == cluster.nodes[1]

        def test_failover_leaves_the_old_primary_diverged(
            self, cluster: ClientFixture
        ) -> None:
            """
            Once the nodes report after a failover, the dataset's state shows
            the new primary and the old primary's copy as diverged, at its
            old epoch.
            """
            dataset = self.create(cluster, replicas=[cluster.nodes[1]])
            cluster.converge()
            self.run(
                cluster,
                cluster.client.failover_dataset(
                    dataset.dataset_id, cluster.nodes[1], force=True
                ),
            )
            cluster.converge()
            [state] = [
                s
                for s in self.run(cluster, cluster.client.list_datasets_state())
                if s.dataset_id == dataset.dataset_id
            ]
            assert state.primary == cluster.nodes[1]
            assert list(state.diverged) == [
                DivergedCopy(
                    node_uuid=cluster.nodes[0], epoch=0, last_snapshot="replicated"
                )
            ]

        # -- configuration tags ----------------------------------------------

        def test_tag_changes(self, cluster: ClientFixture) -> None:
            """A write changes the configuration tag."""
            before = self.run(cluster, cluster.client.list_datasets_configuration())
            self.create(cluster)
            after = self.run(cluster, cluster.client.list_datasets_configuration())
            assert before.tag != after.tag

        def test_matching_tag(self, cluster: ClientFixture) -> None:
            """A write with the current tag succeeds."""
            tag = self.run(cluster, cluster.client.list_datasets_configuration()).tag
            dataset = self.create(cluster, configuration_tag=tag)
            assert dataset.primary == cluster.nodes[0]

        def test_stale_tag(self, cluster: ClientFixture) -> None:
            """A write with a stale tag fails with ConfigurationChanged."""
            tag = self.run(cluster, cluster.client.list_datasets_configuration()).tag
            dataset = self.create(cluster)
            client = cluster.client
            for call in (
                lambda: client.create_dataset(cluster.nodes[0], configuration_tag=tag),
                lambda: client.move_dataset(
                    cluster.nodes[1], dataset.dataset_id, configuration_tag=tag
                ),
                lambda: client.update_dataset(
                    dataset.dataset_id, metadata={}, configuration_tag=tag
                ),
                lambda: client.delete_dataset(
                    dataset.dataset_id, configuration_tag=tag
                ),
            ):
                self.refused(cluster, ConfigurationChanged, call)

        # -- leases ----------------------------------------------------------

        def test_acquire_and_release_lease(self, cluster: ClientFixture) -> None:
            """A lease is acquired, listed, and released."""
            dataset = self.create(cluster)
            client = cluster.client
            lease = self.run(
                cluster,
                client.acquire_lease(dataset.dataset_id, cluster.nodes[0], None),
            )
            assert (lease.dataset_id, lease.node_uuid, lease.expires) == (
                dataset.dataset_id,
                cluster.nodes[0],
                None,
            )
            assert self.run(cluster, client.list_leases()) == [lease]
            released = self.run(cluster, client.release_lease(dataset.dataset_id))
            assert released == lease
            assert self.run(cluster, client.list_leases()) == []

        def test_lease_expiry(self, cluster: ClientFixture) -> None:
            """A lease counts down, lapses, and can then be taken by another node."""
            dataset = self.create(cluster)
            client = cluster.client
            lease = self.run(
                cluster, client.acquire_lease(dataset.dataset_id, cluster.nodes[0], 60)
            )
            assert lease.expires == 60.0
            cluster.clock.advance(20)
            (listed,) = self.run(cluster, client.list_leases())
            assert listed.expires == 40.0
            cluster.clock.advance(40)
            assert self.run(cluster, client.list_leases()) == []
            taken = self.run(
                cluster,
                client.acquire_lease(dataset.dataset_id, cluster.nodes[1], None),
            )
            assert taken.node_uuid == cluster.nodes[1]

        def test_renew_lease(self, cluster: ClientFixture) -> None:
            """The holder acquiring again renews the lease."""
            dataset = self.create(cluster)
            client = cluster.client
            self.run(
                cluster, client.acquire_lease(dataset.dataset_id, cluster.nodes[0], 5)
            )
            renewed = self.run(
                cluster, client.acquire_lease(dataset.dataset_id, cluster.nodes[0], 50)
            )
            assert renewed.expires == 50.0

        def test_lease_held(self, cluster: ClientFixture) -> None:
            """Another node's lease fails with LeaseAlreadyHeld."""
            dataset = self.create(cluster)
            client = cluster.client
            self.run(
                cluster,
                client.acquire_lease(dataset.dataset_id, cluster.nodes[0], None),
            )
            self.refused(
                cluster,
                LeaseAlreadyHeld,
                lambda: client.acquire_lease(
                    dataset.dataset_id, cluster.nodes[1], None
                ),
            )

        def test_lease_errors(self, cluster: ClientFixture) -> None:
            """Unknown datasets, nodes and leases are refused."""
            dataset = self.create(cluster)
            client = cluster.client
            self.refused(
                cluster,
                UnknownDataset,
                lambda: client.acquire_lease(uuid4(), cluster.nodes[0], None),
            )
            self.refused(
                cluster,
                BadRequest,
                lambda: client.acquire_lease(dataset.dataset_id, uuid4(), None),
            )
            self.refused(
                cluster, UnknownLease, lambda: client.release_lease(dataset.dataset_id)
            )

        def test_leased_dataset_stays(self, cluster: ClientFixture) -> None:
            """A dataset leased on its node can be neither moved nor deleted."""
            dataset = self.create(cluster)
            client = cluster.client
            self.run(
                cluster,
                client.acquire_lease(dataset.dataset_id, cluster.nodes[0], None),
            )
            self.refused(
                cluster,
                DatasetConflict,
                lambda: client.move_dataset(cluster.nodes[1], dataset.dataset_id),
            )
            self.refused(
                cluster,
                DatasetConflict,
                lambda: client.delete_dataset(dataset.dataset_id),
            )

        # -- containers ------------------------------------------------------

        def container(self, cluster: ClientFixture, **changes: Any) -> Container:
            """A container on node 0 publishing port 8080."""
            fields: dict[str, Any] = {
                "node_uuid": cluster.nodes[0],
                "name": "web",
                "image": "nginx:1",
                "ports": [ContainerPort(internal=80, external=8080)],
                "environment": {"MODE": "test"},
            }
            fields.update(changes)
            return Container(**fields)

        def test_create_container(self, cluster: ClientFixture) -> None:
            """A created container is returned and listed."""
            dataset = self.create(cluster)
            container = self.container(
                cluster,
                volumes=[
                    MountedDataset(dataset_id=dataset.dataset_id, mountpoint="/d")
                ],
                cpu_shares=100,
                command_line=("nginx", "-g", "daemon off;"),
            )
            created = self.run(cluster, cluster.client.create_container(container))
            assert created == container
            listed = self.run(cluster, cluster.client.list_containers_configuration())
            assert listed == [container]

        def test_container_errors(self, cluster: ClientFixture) -> None:
            """Duplicate names, unknown nodes and datasets, port clashes are refused."""
            client = cluster.client
            dataset = self.create(cluster)
            self.run(cluster, client.create_container(self.container(cluster)))
            self.refused(
                cluster,
                ContainerAlreadyExists,
                lambda: client.create_container(
                    self.container(cluster, node_uuid=cluster.nodes[1], ports=[])
                ),
            )
            self.refused(
                cluster,
                BadRequest,
                lambda: client.create_container(
                    self.container(cluster, name="x", node_uuid=uuid4(), ports=[])
                ),
            )
            self.refused(
                cluster,
                UnknownDataset,
                lambda: client.create_container(
                    self.container(
                        cluster,
                        name="x",
                        ports=[],
                        volumes=[MountedDataset(dataset_id=uuid4(), mountpoint="/d")],
                    )
                ),
            )
            self.refused(
                cluster,
                ContainerConflict,
                lambda: client.create_container(self.container(cluster, name="x")),
            )
            self.refused(
                cluster,
                ContainerConflict,
                lambda: client.create_container(
                    self.container(
                        cluster,
                        name="x",
                        ports=[],
                        node_uuid=cluster.nodes[1],
                        volumes=[
                            MountedDataset(
                                dataset_id=dataset.dataset_id, mountpoint="/d"
                            )
                        ],
                    )
                ),
            )

        def test_move_container(self, cluster: ClientFixture) -> None:
            """A moved container takes its datasets along."""
            dataset = self.create(cluster)
            volumes = [MountedDataset(dataset_id=dataset.dataset_id, mountpoint="/d")]
            client = cluster.client
            self.run(
                cluster,
                client.create_container(self.container(cluster, volumes=volumes)),
            )
            self.refused(
                cluster,
                DatasetConflict,
                lambda: client.move_dataset(cluster.nodes[1], dataset.dataset_id),
            )
            moved = self.run(cluster, client.move_container("web", cluster.nodes[1]))
            assert moved.node_uuid == cluster.nodes[1]
            listed = self.run(cluster, client.list_datasets_configuration())
            assert listed.datasets[dataset.dataset_id].primary == cluster.nodes[1]
            self.refused(
                cluster,
                UnknownContainer,
                lambda: client.move_container("db", cluster.nodes[0]),
            )
            self.refused(
                cluster, BadRequest, lambda: client.move_container("web", uuid4())
            )

        def test_delete_container(self, cluster: ClientFixture) -> None:
            """A deleted container is gone; deleting it again fails."""
            client = cluster.client
            container = self.container(cluster)
            self.run(cluster, client.create_container(container))
            assert self.run(cluster, client.delete_container("web")) == container
            assert self.run(cluster, client.list_containers_configuration()) == []
            self.refused(
                cluster, UnknownContainer, lambda: client.delete_container("web")
            )

        def test_container_state(self, cluster: ClientFixture) -> None:
            """After convergence the configured containers are reported running."""
            container = self.container(cluster)
            self.run(cluster, cluster.client.create_container(container))
            assert self.run(cluster, cluster.client.list_containers_state()) == []
            cluster.converge()
            (state,) = self.run(cluster, cluster.client.list_containers_state())
            assert (state.container, state.running) == (container, True)

    return IFlockerAPIV1ClientTests
