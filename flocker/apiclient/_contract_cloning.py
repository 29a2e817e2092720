"""
The part of the `IFlockerAPIV1Client` contract suite about snapshots,
rollbacks, clones, environments and transfers (see
`flocker.apiclient.testtools.make_iflockerapiv1client_tests`, whose test
class has this one as its base and provides ``run``, ``refused`` and
``create``).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from ._interface import (
    BadRequest,
    ConfigurationChanged,
    Container,
    ContainerPort,
    EnvironmentConflict,
    MountedDataset,
    NodeUnavailable,
    Origin,
    SnapshotConflict,
    Transfer,
    Transfers,
    UnknownContainer,
    UnknownDataset,
    UnknownEnvironment,
    UnknownSnapshot,
)

__all__ = ["CloningContract"]

MIB = 1024 * 1024


class CloningContract:
    """Snapshots, rollbacks, clones, environments and transfers."""

    run: Any
    refused: Any
    create: Any

    def exposed(self, cluster: Any, **kwargs: Any) -> Any:
        """A dataset on node 0 (by default), exposed there."""
        dataset = self.create(cluster, **kwargs)
        cluster.converge()
        return dataset

    def snapshot_names(self, cluster: Any, dataset_id: Any) -> list[str]:
        """The names of the dataset's snapshots, as listed."""
        return [s.name for s in self.run(cluster, cluster.client.list_snapshots(dataset_id))]

    # -- snapshots ---------------------------------------------------------------

    def test_snapshots(self, cluster: Any) -> None:
        """A snapshot is taken, listed (oldest first) and deleted."""
        dataset = self.exposed(cluster)
        client = cluster.client
        assert self.run(cluster, client.list_snapshots(dataset.dataset_id)) == []
        monday = self.run(cluster, client.create_snapshot(dataset.dataset_id, "monday"))
        assert (monday.name, monday.set_aside, monday.node_uuid) == ("monday", False, None)
        assert isinstance(monday.created, float)
        self.run(cluster, client.create_snapshot(dataset.dataset_id, "tuesday"))
        assert self.snapshot_names(cluster, dataset.dataset_id) == ["monday", "tuesday"]
        deleted = self.run(cluster, client.delete_snapshot(dataset.dataset_id, "monday"))
        assert deleted == monday
        assert self.snapshot_names(cluster, dataset.dataset_id) == ["tuesday"]

    def test_snapshot_refusals(self, cluster: Any) -> None:
        """
        Bad and reserved names, unknown datasets and snapshots, a taken name,
        and datasets deleted or not exposed yet are refused, changing nothing.
        """
        client = cluster.client
        pending = self.create(cluster)
        with pytest.raises(SnapshotConflict):
            self.run(cluster, client.create_snapshot(pending.dataset_id, "x"))
        with pytest.raises(SnapshotConflict):
            self.run(cluster, client.list_snapshots(pending.dataset_id))
        dataset = self.exposed(cluster)
        self.run(cluster, client.create_snapshot(dataset.dataset_id, "monday"))
        for name in ("flocker-mine", "Flocker", "no spaces", ""):
            with pytest.raises(BadRequest):
                self.run(cluster, client.create_snapshot(dataset.dataset_id, name))
        with pytest.raises(SnapshotConflict):
            self.run(cluster, client.create_snapshot(dataset.dataset_id, "monday"))
        with pytest.raises(UnknownDataset):
            self.run(cluster, client.create_snapshot(uuid4(), "x"))
        with pytest.raises(UnknownDataset):
            self.run(cluster, client.list_snapshots(uuid4()))
        with pytest.raises(UnknownSnapshot):
            self.run(cluster, client.delete_snapshot(dataset.dataset_id, "tuesday"))
        with pytest.raises(BadRequest):
            self.run(cluster, client.delete_snapshot(dataset.dataset_id, "flocker-x"))
        assert self.snapshot_names(cluster, dataset.dataset_id) == ["monday"]
        self.run(cluster, client.delete_dataset(dataset.dataset_id))
        with pytest.raises(SnapshotConflict):
            self.run(cluster, client.create_snapshot(dataset.dataset_id, "x"))

    def test_agent_not_connected(self, cluster: Any) -> None:
        """
        While the primary's dataset agent is not connected, every request
        that needs it fails with NodeUnavailable, changing nothing.
        """
        client = cluster.client
        dataset = self.exposed(cluster)
        self.run(cluster, client.create_snapshot(dataset.dataset_id, "monday"))
        web = Container(
            node_uuid=cluster.nodes[0],
            name="web",
            image="nginx:1",
            volumes=[MountedDataset(dataset_id=dataset.dataset_id, mountpoint="/d")],
        )
        self.run(cluster, client.create_container(web))
        cluster.disconnect_agent(cluster.nodes[0])
        dataset_id = dataset.dataset_id
        for call in (
            lambda: client.list_snapshots(dataset_id),
            lambda: client.create_snapshot(dataset_id, "tuesday"),
            lambda: client.delete_snapshot(dataset_id, "monday"),
            lambda: client.rollback_dataset(dataset_id, "monday"),
            lambda: client.clone_dataset(dataset_id, "monday"),
            lambda: client.create_environment("s", ["web"], 1),
        ):
            self.refused(cluster, NodeUnavailable, call)

    # -- clones ------------------------------------------------------------------

    def test_clone(self, cluster: Any) -> None:
        """
        A clone is a new dataset on the same node, of the same size, with
        its origin and the metadata given; it is configured, and keeps its
        snapshot from being deleted until it is deleted itself.
        """
        client = cluster.client
        dataset = self.exposed(cluster, maximum_size=64 * MIB)
        self.run(cluster, client.create_snapshot(dataset.dataset_id, "monday"))
        new_id = uuid4()
        clone = self.run(
            cluster,
            client.clone_dataset(
                dataset.dataset_id, "monday", new_id, metadata={"name": "copy"}
            ),
        )
        assert (clone.dataset_id, clone.primary, clone.maximum_size) == (
            new_id,
            cluster.nodes[0],
            64 * MIB,
        )
        assert dict(clone.metadata) == {"name": "copy"}
        assert clone.origin == Origin(dataset_id=dataset.dataset_id, snapshot="monday")
        listed = self.run(cluster, client.list_datasets_configuration())
        assert listed.datasets[new_id] == clone
        self.refused(
            cluster,
            SnapshotConflict,
            lambda: client.delete_snapshot(dataset.dataset_id, "monday"),
        )
        self.run(cluster, client.delete_dataset(new_id))
        self.run(cluster, client.delete_snapshot(dataset.dataset_id, "monday"))

    def test_clone_refusals(self, cluster: Any) -> None:
        """Unknown datasets and snapshots, bad names and a taken id: nothing added."""
        client = cluster.client
        dataset = self.exposed(cluster)
        self.run(cluster, client.create_snapshot(dataset.dataset_id, "monday"))
        self.refused(
            cluster, UnknownSnapshot, lambda: client.clone_dataset(dataset.dataset_id, "x")
        )
        self.refused(cluster, UnknownDataset, lambda: client.clone_dataset(uuid4(), "x"))
        self.refused(
            cluster,
            BadRequest,
            lambda: client.clone_dataset(dataset.dataset_id, "flocker-x"),
        )
        self.refused(
            cluster,
            SnapshotConflict,
            lambda: client.clone_dataset(dataset.dataset_id, "monday", dataset.dataset_id),
        )

    # -- rollback ----------------------------------------------------------------

    def test_rollback(self, cluster: Any) -> None:
        """
        A rollback is accepted with a request id, which the dataset's state
        shows as ``rolled_back`` once the nodes converged; later snapshots
        are then gone.
        """
        client = cluster.client
        dataset = self.exposed(cluster)
        for name in ("monday", "tuesday"):
            self.run(cluster, client.create_snapshot(dataset.dataset_id, name))
        accepted = self.run(cluster, client.rollback_dataset(dataset.dataset_id, "monday"))
        assert (accepted.dataset_id, accepted.snapshot) == (dataset.dataset_id, "monday")
        (state,) = self.run(cluster, client.list_datasets_state())
        assert state.rolled_back is None
        cluster.converge()
        (state,) = self.run(cluster, client.list_datasets_state())
        assert state.rolled_back == accepted.request_id
        assert self.snapshot_names(cluster, dataset.dataset_id) == ["monday"]

    def test_rollback_refusals(self, cluster: Any) -> None:
        """
        Unknown snapshots and datasets, a stale tag, and a rollback that
        would discard the snapshot a clone is made from are refused.
        """
        client = cluster.client
        dataset = self.exposed(cluster)
        tag = self.run(cluster, client.list_datasets_configuration()).tag
        for name in ("monday", "tuesday"):
            self.run(cluster, client.create_snapshot(dataset.dataset_id, name))
        self.run(cluster, client.clone_dataset(dataset.dataset_id, "tuesday"))
        cluster.converge()
        self.refused(
            cluster,
            UnknownSnapshot,
            lambda: client.rollback_dataset(dataset.dataset_id, "sunday"),
        )
        self.refused(cluster, UnknownDataset, lambda: client.rollback_dataset(uuid4(), "x"))
        with pytest.raises(SnapshotConflict) as refusal:
            self.run(cluster, client.rollback_dataset(dataset.dataset_id, "monday"))
        assert "'tuesday'" in refusal.value.description
        self.run(cluster, client.create_snapshot(dataset.dataset_id, "wednesday"))
        self.refused(
            cluster,
            ConfigurationChanged,
            lambda: client.rollback_dataset(
                dataset.dataset_id, "tuesday", configuration_tag=tag
            ),
        )

    # -- transfers ---------------------------------------------------------------

    def test_transfers(self, cluster: Any) -> None:
        """
        The transfers the agents report are listed, with the nodes whose
        agents did not answer.
        """
        client = cluster.client
        assert self.run(cluster, client.list_transfers()) == Transfers()
        dataset_id = uuid4()
        transfer = Transfer(
            dataset_id=dataset_id,
            node_uuid=cluster.nodes[1],
            snapshot="s",
            base=None,
            bytes=10 * MIB,
            size=64 * MIB,
        )
        cluster.report_transfers([transfer], [cluster.nodes[0]])
        assert self.run(cluster, client.list_transfers()) == Transfers(
            transfers=[transfer], unanswered=[cluster.nodes[0]]
        )

    # -- environments --------------------------------------------------------------

    def deploy_web(self, cluster: Any) -> Any:
        """``web`` on node 0 publishing 8080, on an exposed dataset "db"; the dataset."""
        dataset = self.create(cluster, metadata={"name": "db"}, maximum_size=64 * MIB)
        web = Container(
            node_uuid=cluster.nodes[0],
            name="web",
            image="nginx:1",
            ports=[ContainerPort(internal=80, external=8080)],
            volumes=[MountedDataset(dataset_id=dataset.dataset_id, mountpoint="/data")],
        )
        self.run(cluster, cluster.client.create_container(web))
        cluster.converge()
        return dataset

    def test_environment_lifecycle(self, cluster: Any) -> None:
        """
        An environment's copies run the group's applications renamed, on
        clones of their datasets, on free ports or those asked for; it is
        listed; a reset copy gets fresh clones; copies, then the whole
        environment, are removed with their applications.
        """
        client = cluster.client
        dataset = self.deploy_web(cluster)
        made = self.run(
            cluster,
            client.create_environment(
                "staging", ["web"], 2, ports={"2": {"web": {8080: 18080}}}
            ),
        )
        assert (made.name, list(made.applications)) == ("staging", ["web"])
        assert made.snapshot.startswith("flocker-env-staging-")
        assert [c.name for c in made.copies] == ["1", "2"]
        one, two = made.copies
        assert [(a.name, a.origin, a.node_uuid) for a in two.applications] == [
            ("web-staging-2", "web", cluster.nodes[0])
        ]
        assert list(two.applications[0].ports) == [ContainerPort(internal=80, external=18080)]
        assert list(one.applications[0].ports) == [ContainerPort(internal=80, external=20000)]
        [clone] = one.datasets
        assert clone.origin == Origin(dataset_id=dataset.dataset_id, snapshot=made.snapshot)
        configured = self.run(cluster, client.list_datasets_configuration()).datasets
        assert configured[clone.dataset_id].metadata["name"] == "db-staging-1"
        assert configured[clone.dataset_id].primary == cluster.nodes[0]
        containers = self.run(cluster, client.list_containers_configuration())
        assert [c.name for c in containers] == ["web", "web-staging-1", "web-staging-2"]
        assert [v.dataset_id for v in containers[1].volumes] == [clone.dataset_id]
        assert self.run(cluster, client.list_environments()) == [made]
        assert self.run(cluster, client.get_environment("staging")) == made

        reset = self.run(cluster, client.reset_environment_copy("staging", "1"))
        assert reset.applications == one.applications
        [fresh] = reset.datasets
        assert fresh.dataset_id != clone.dataset_id and fresh.origin == clone.origin
        configured = self.run(cluster, client.list_datasets_configuration()).datasets
        # The old clone is deleted (and may have left already: no node has it).
        assert clone.dataset_id not in configured or configured[clone.dataset_id].deleted

        gone = self.run(cluster, client.delete_environment_copy("staging", "1"))
        assert [(a.name, a.node_uuid, list(a.ports)) for a in gone.applications] == [
            ("web-staging-1", None, [])
        ]
        left = self.run(cluster, client.get_environment("staging"))
        assert [c.name for c in left.copies] == ["2"]
        removed = self.run(cluster, client.delete_environment("staging"))
        assert (removed.name, list(removed.copies)) == ("staging", [])
        assert self.run(cluster, client.list_environments()) == []
        containers = self.run(cluster, client.list_containers_configuration())
        assert [c.name for c in containers] == ["web"]

    def test_environment_refusals(self, cluster: Any) -> None:
        """
        Unknown applications, environments and copies, taken names, bad
        copies and ports are refused, changing nothing.
        """
        client = cluster.client
        self.deploy_web(cluster)
        for error, call in [
            (UnknownContainer, lambda: client.create_environment("s", ["nope"], 1)),
            (BadRequest, lambda: client.create_environment("s", ["web"], 0)),
            (BadRequest, lambda: client.create_environment("s", ["web"], ["a", "a"])),
            (BadRequest, lambda: client.create_environment("bad name!", ["web"], 1)),
            (
                BadRequest,
                lambda: client.create_environment("s", ["web"], 1, ports={"9": {}}),
            ),
            (
                BadRequest,
                lambda: client.create_environment(
                    "s", ["web"], 1, ports={"1": {"web": {8080: 8080}}}
                ),
            ),
        ]:
            self.refused(cluster, error, call)
        self.run(cluster, client.create_environment("s", ["web"], 1))
        self.refused(
            cluster, EnvironmentConflict, lambda: client.create_environment("s", ["web"], 1)
        )
        self.refused(cluster, UnknownEnvironment, lambda: client.get_environment("other"))
        self.refused(
            cluster, UnknownEnvironment, lambda: client.reset_environment_copy("s", "9")
        )
        self.refused(
            cluster, UnknownEnvironment, lambda: client.delete_environment_copy("s", "9")
        )
        self.refused(
            cluster, UnknownEnvironment, lambda: client.delete_environment("other")
        )
