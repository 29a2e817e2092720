"""
The part of the `IFlockerAPIV1Client` contract suite about health checks,
container updates and rollbacks (see
`flocker.apiclient.testtools.make_iflockerapiv1client_tests`, whose test
class has this one as a base and provides ``run``, ``refused``, ``create``
and ``container``).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from ._interface import (
    BadRequest,
    ConfigurationChanged,
    ContainerConflict,
    ContainerPort,
    HealthCheck,
    MountedDataset,
    NothingToRollBack,
    RestartPolicy,
    UnknownContainer,
)

__all__ = ["ContainerUpdateContract"]

#: An HTTP check of the contract's container (which publishes 8080 → 80).
HTTP_CHECK = HealthCheck(kind="http", port=80, path="/healthz")


class ContainerUpdateContract:
    """Health checks, container updates and rollbacks."""

    run: Any
    refused: Any
    create: Any
    container: Any

    def created(self, cluster: Any, **changes: Any) -> Any:
        """The contract's container (``web``, ``nginx:1``, 8080 → 80), created."""
        return self.run(
            cluster, cluster.client.create_container(self.container(cluster, **changes))
        )

    def listed(self, cluster: Any, name: str = "web") -> Any:
        """The configured container ``name`` as listed."""
        containers = self.run(cluster, cluster.client.list_containers_configuration())
        [found] = [c for c in containers if c.name == name]
        return found

    # -- creation with a health check ---------------------------------------------

    def test_create_with_health(self, cluster: Any) -> None:
        """
        A container created with a health check has it, the unset timings
        being the defaults; it is at revision 0 with nothing to roll back to.
        """
        created = self.created(
            cluster, health=HealthCheck(kind="tcp", port=80, interval=10, retries=5)
        )
        assert created.health == HealthCheck(
            kind="tcp", port=80, interval=10.0, timeout=2.0, retries=5, start_period=30.0
        )
        assert (
            created.revision,
            created.updating,
            created.update_failed,
            created.previous_image,
        ) == (0, False, None, None)
        assert self.listed(cluster) == created
        http = self.created(cluster, name="api", ports=[], health=None)
        assert http.health is None

    def test_create_with_bad_health_refused(self, cluster: Any) -> None:
        """
        A health check on a port the container does not publish (internal),
        an http check without a path or a tcp one with a path, are refused
        with BadRequest.
        """
        client = cluster.client
        for health in (
            HealthCheck(kind="tcp", port=8080),
            HealthCheck(kind="http", port=80),
            HealthCheck(kind="tcp", port=80, path="/x"),
            HealthCheck(kind="http", port=80, path="/", retries=0),
        ):
            self.refused(
                cluster,
                BadRequest,
                lambda h=health: client.create_container(
                    self.container(cluster, health=h)
                ),
            )

    # -- updates ------------------------------------------------------------------

    def test_update_replaces_the_fields_given(self, cluster: Any) -> None:
        """
        An update replaces the fields given (the environment whole), keeps
        the others, and makes the next revision, updating, which remembers
        the image it replaced.
        """
        dataset = self.create(cluster)
        volumes = [MountedDataset(dataset_id=dataset.dataset_id, mountpoint="/d")]
        before = self.created(cluster, volumes=volumes, cpu_shares=100)
        updated = self.run(
            cluster,
            cluster.client.update_container(
                "web",
                image="nginx:2",
                environment={"MODE": "live"},
                restart_policy=RestartPolicy(name="always"),
                health=HTTP_CHECK,
            ),
        )
        assert updated == before.set(
            image="nginx:2",
            environment={"MODE": "live"},
            restart_policy=RestartPolicy(name="always"),
            health=HTTP_CHECK,
            revision=1,
            updating=True,
            previous_image="nginx:1",
        )
        assert self.listed(cluster) == updated

    def test_update_removes_with_none(self, cluster: Any) -> None:
        """``None`` removes the command line, CPU shares, memory limit and health check."""
        self.created(
            cluster,
            command_line=("nginx",),
            cpu_shares=100,
            memory_limit=64 * 1024 * 1024,
            health=HTTP_CHECK,
        )
        updated = self.run(
            cluster,
            cluster.client.update_container(
                "web", command_line=None, cpu_shares=None, memory_limit=None, health=None
            ),
        )
        assert (
            updated.command_line,
            updated.cpu_shares,
            updated.memory_limit,
            updated.health,
        ) == (None, None, None, None)
        assert updated.revision == 1

    def test_update_to_the_same_specification_changes_nothing(
        self, cluster: Any
    ) -> None:
        """An update that changes no field makes no new revision."""
        created = self.created(cluster)
        same = self.run(
            cluster,
            cluster.client.update_container(
                "web", image="nginx:1", ports=[ContainerPort(internal=80, external=8080)]
            ),
        )
        assert same == created
        assert self.listed(cluster) == created

    def test_update_ports_and_health_together(self, cluster: Any) -> None:
        """New ports and a health check on one of them are one valid update."""
        self.created(cluster)
        updated = self.run(
            cluster,
            cluster.client.update_container(
                "web",
                ports=[ContainerPort(internal=8000, external=8081)],
                health=HealthCheck(kind="tcp", port=8000),
            ),
        )
        assert list(updated.ports) == [ContainerPort(internal=8000, external=8081)]
        assert updated.health == HealthCheck(kind="tcp", port=8000)

    def test_update_refusals(self, cluster: Any) -> None:
        """
        An unknown container, nothing to change, an unknown node and a port
        taken on the node are refused, changing nothing.
        """
        client = cluster.client
        self.created(cluster, health=HTTP_CHECK)
        self.created(
            cluster, name="other", ports=[ContainerPort(internal=80, external=9090)]
        )
        self.refused(
            cluster, UnknownContainer, lambda: client.update_container("db", image="x")
        )
        self.refused(cluster, BadRequest, lambda: client.update_container("web"))
        self.refused(
            cluster,
            BadRequest,
            lambda: client.update_container("web", image="x", node_uuid=uuid4()),
        )
        self.refused(
            cluster,
            ContainerConflict,
            lambda: client.update_container(
                "web", ports=[ContainerPort(internal=80, external=9090)]
            ),
        )

    def test_update_health_port_refusals(self, cluster: Any) -> None:
        """
        A request whose health check probes a port its own new ports leave
        out contradicts itself (`BadRequest`); a new check on a port the
        container does not publish, or new ports leaving out the one its
        check probes, contradict its configuration (`ContainerConflict`).
        """
        client = cluster.client
        self.created(cluster, health=HTTP_CHECK)
        self.refused(
            cluster,
            BadRequest,
            lambda: client.update_container(
                "web",
                ports=[ContainerPort(internal=81, external=8080)],
                health=HealthCheck(kind="tcp", port=80),
            ),
        )
        with pytest.raises(ContainerConflict) as refusal:
            self.run(
                cluster,
                client.update_container("web", health=HealthCheck(kind="tcp", port=8080)),
            )
        assert "port 8080" in refusal.value.description
        self.refused(
            cluster,
            ContainerConflict,
            lambda: client.update_container(
                "web", ports=[ContainerPort(internal=81, external=8080)]
            ),
        )

    def test_update_and_move_in_one_request(self, cluster: Any) -> None:
        """An update naming another node moves the container and its dataset too."""
        dataset = self.create(cluster)
        volumes = [MountedDataset(dataset_id=dataset.dataset_id, mountpoint="/d")]
        self.created(cluster, volumes=volumes)
        updated = self.run(
            cluster,
            cluster.client.update_container(
                "web", node_uuid=cluster.nodes[1], image="nginx:2"
            ),
        )
        assert (updated.node_uuid, updated.image, updated.revision) == (
            cluster.nodes[1],
            "nginx:2",
            1,
        )
        datasets = self.run(cluster, cluster.client.list_datasets_configuration())
        assert datasets.datasets[dataset.dataset_id].primary == cluster.nodes[1]

    # -- rollbacks ------------------------------------------------------------------

    def test_container_rollback(self, cluster: Any) -> None:
        """
        A rollback returns to the specification the last update replaced,
        as the next revision; then there is nothing more to roll back to.
        """
        created = self.created(cluster)
        client = cluster.client
        self.run(cluster, client.update_container("web", image="nginx:2", health=HTTP_CHECK))
        rolled_back = self.run(cluster, client.rollback_container("web"))
        assert rolled_back == created.set(revision=2)
        assert self.listed(cluster) == rolled_back
        self.refused(cluster, NothingToRollBack, lambda: client.rollback_container("web"))

    def test_container_rollback_refusals(self, cluster: Any) -> None:
        """
        A container never updated has nothing to roll back to
        (`NothingToRollBack`, a `ContainerConflict`); an unknown one is
        `UnknownContainer`.
        """
        self.created(cluster)
        client = cluster.client
        with pytest.raises(ContainerConflict) as refusal:
            self.run(cluster, client.rollback_container("web"))
        assert isinstance(refusal.value, NothingToRollBack)
        assert "no previous specification" in refusal.value.description
        self.refused(cluster, UnknownContainer, lambda: client.rollback_container("db"))

    def test_stale_tag_refuses_updates_and_rollbacks(self, cluster: Any) -> None:
        """An update or rollback with a stale configuration tag changes nothing."""
        client = cluster.client
        tag = self.run(cluster, client.list_datasets_configuration()).tag
        self.created(cluster)
        self.refused(
            cluster,
            ConfigurationChanged,
            lambda: client.update_container("web", image="x", configuration_tag=tag),
        )
        self.run(cluster, client.update_container("web", image="nginx:2"))
        self.refused(
            cluster,
            ConfigurationChanged,
            lambda: client.rollback_container("web", configuration_tag=tag),
        )

    # -- reported health --------------------------------------------------------------

    def test_reported_health(self, cluster: Any) -> None:
        """The state shows the health a node reports, and the last failure's reason."""
        self.created(cluster, health=HTTP_CHECK)
        cluster.converge()
        (state,) = self.run(cluster, cluster.client.list_containers_state())
        assert (state.health, state.health_reason) == (None, None)
        cluster.report_health("web", "unhealthy", "HTTP 503")
        (state,) = self.run(cluster, cluster.client.list_containers_state())
        assert (state.running, state.health, state.health_reason) == (
            True,
            "unhealthy",
            "HTTP 503",
        )
        cluster.report_health("web", "healthy", None)
        (state,) = self.run(cluster, cluster.client.list_containers_state())
        assert (state.health, state.health_reason) == ("healthy", None)

    def test_healthy_update_is_done(self, cluster: Any) -> None:
        """
        Once the updated revision is reported healthy the update is done
        (no longer updating), and can still be rolled back by hand.
        """
        self.created(cluster)
        client = cluster.client
        self.run(cluster, client.update_container("web", image="nginx:2"))
        cluster.converge()
        cluster.report_health("web", "healthy", None)
        done = self.listed(cluster)
        assert (done.revision, done.updating, done.previous_image) == (1, False, "nginx:1")
        rolled_back = self.run(cluster, client.rollback_container("web"))
        assert (rolled_back.image, rolled_back.update_failed) == ("nginx:1", None)

    def test_unhealthy_update_is_rolled_back(self, cluster: Any) -> None:
        """
        An updated revision reported unhealthy is rolled back by the control
        service, which says why in ``update_failed``.
        """
        created = self.created(cluster)
        client = cluster.client
        self.run(cluster, client.update_container("web", image="nginx:2"))
        cluster.converge()
        cluster.report_health("web", "unhealthy", "connection refused")
        rolled_back = self.listed(cluster)
        assert rolled_back.update_failed is not None
        assert rolled_back.set(update_failed=None) == created.set(revision=2)
        self.refused(cluster, NothingToRollBack, lambda: client.rollback_container("web"))

    def test_environment_copy_of_an_updated_container_starts_afresh(
        self, cluster: Any
    ) -> None:
        """A copy of an updated container has its specification at revision 0, without history."""
        dataset = self.create(cluster)
        cluster.converge()
        volumes = [MountedDataset(dataset_id=dataset.dataset_id, mountpoint="/d")]
        self.created(cluster, volumes=volumes)
        client = cluster.client
        updated = self.run(cluster, client.update_container("web", image="nginx:2"))
        cluster.converge()
        self.run(cluster, client.create_environment("s", ["web"], 1))
        copy = self.listed(cluster, "web-s-1")
        assert (copy.image, copy.revision, copy.updating, copy.previous_image) == (
            updated.image,
            0,
            False,
            None,
        )
        self.refused(
            cluster, NothingToRollBack, lambda: client.rollback_container("web-s-1")
        )

    # -- instances (replicas) ----------------------------------------------------------

    def test_create_with_several_instances(self, cluster: Any) -> None:
        """
        A container without volumes created with several instances has
        them, listed too; one created without runs once.
        """
        created = self.created(cluster, replicas=3)
        assert created.replicas == 3
        assert self.listed(cluster) == created
        once = self.created(cluster, name="api", ports=[])
        assert (once.replicas, self.listed(cluster, "api").replicas) == (1, 1)

    def test_instance_names_refused(self, cluster: Any) -> None:
        """
        A container named like an extra instance (ending in ``..`` and
        digits) is refused (`BadRequest`, saying the name is reserved for
        extra instances), and so is a replicated one whose name is longer
        than 124 characters; nothing is created.  ``..`` elsewhere in a
        name is allowed.
        """
        client = cluster.client
        with pytest.raises(BadRequest) as refusal:
            self.run(cluster, client.create_container(self.container(cluster, name="web..2")))
        assert (
            "reserved for the extra instances Flocker runs of a replicated "
            "application on one node"
        ) in refusal.value.description
        self.refused(
            cluster,
            BadRequest,
            lambda: client.create_container(
                self.container(cluster, name="w" * 125, replicas=2)
            ),
        )
        assert self.run(cluster, client.list_containers_configuration()) == []
        self.created(cluster, name="w.e.b", replicas=2)
        self.created(cluster, name="my..app", replicas=2, ports=[])

    def test_container_replicas_refused(self, cluster: Any) -> None:
        """
        More than one instance of a container with volumes, at creation or
        by an update, is refused (`BadRequest`, saying replicas are for
        containers without volumes), and so are replicas out of 1 to 64 (or
        ``None`` in an update); nothing changes.
        """
        client = cluster.client
        dataset = self.create(cluster)
        volumes = [MountedDataset(dataset_id=dataset.dataset_id, mountpoint="/d")]
        with pytest.raises(BadRequest) as refusal:
            self.run(
                cluster,
                client.create_container(
                    self.container(cluster, volumes=volumes, replicas=2)
                ),
            )
        assert "replicas are for applications without volumes" in refusal.value.description
        for replicas in (0, 65):
            self.refused(
                cluster,
                BadRequest,
                lambda n=replicas: client.create_container(
                    self.container(cluster, replicas=n)
                ),
            )
        self.created(cluster, volumes=volumes)
        self.created(cluster, name="api", ports=[], replicas=2)
        updates: list[tuple[str, int | None]] = [
            ("web", 2),
            ("api", 0),
            ("api", 65),
            ("api", None),
        ]
        for name, count in updates:
            self.refused(
                cluster,
                BadRequest,
                lambda c=name, n=count: client.update_container(c, replicas=n),
            )
        with pytest.raises(BadRequest) as refusal:
            self.run(cluster, client.update_container("web", image="x", replicas=2))
        assert "replicas are for applications without volumes" in refusal.value.description

    def test_scale_is_an_update(self, cluster: Any) -> None:
        """
        A change of replicas alone is the next revision, updating, which a
        rollback undoes; the same number changes nothing.
        """
        created = self.created(cluster)
        client = cluster.client
        scaled = self.run(cluster, client.update_container("web", replicas=4))
        assert scaled == created.set(
            replicas=4, revision=1, updating=True, previous_image="nginx:1"
        )
        assert self.listed(cluster) == scaled
        same = self.run(cluster, client.update_container("web", replicas=4))
        assert same == scaled
        rolled_back = self.run(cluster, client.rollback_container("web"))
        assert rolled_back == created.set(revision=2)

    def test_state_reports_each_instance(self, cluster: Any) -> None:
        """
        The container is reported running once per instance (instances
        beyond the nodes double up on them: three on two nodes are two on
        the container's own node and one on the other), each with the
        health its node reports, once its node reports their health; a
        node reporting none yet is listed once.  Another node's ``healthy``
        does not confirm an update, the container's own node's does; any
        node's ``unhealthy`` rolls the update back.
        """
        created = self.created(cluster, replicas=3)
        client = cluster.client
        cluster.converge()
        states = self.run(cluster, client.list_containers_state())
        assert sorted(str(s.container.node_uuid) for s in states) == sorted(
            map(str, cluster.nodes)
        )
        for node in cluster.nodes:
            cluster.report_health("web", "starting", None, node_uuid=node)
        states = self.run(cluster, client.list_containers_state())
        assert sorted(str(s.container.node_uuid) for s in states) == sorted(
            [str(cluster.nodes[0])] * 2 + [str(cluster.nodes[1])]
        )
        assert all(
            s.running
            and s.health == "starting"
            and s.container == created.set(node_uuid=s.container.node_uuid, replicas=1)
            for s in states
        )
        self.run(cluster, client.update_container("web", image="nginx:2"))
        cluster.converge()
        cluster.report_health("web", "healthy", None, node_uuid=cluster.nodes[1])
        assert self.listed(cluster).updating
        cluster.report_health("web", "healthy", None)
        health = sorted(
            (str(s.container.node_uuid), s.health, s.health_reason)
            for s in self.run(cluster, client.list_containers_state())
        )
        assert health == sorted(
            [(str(cluster.nodes[0]), "healthy", None)] * 2
            + [(str(cluster.nodes[1]), "healthy", None)]
        )
        done = self.listed(cluster)
        assert (done.revision, done.updating, done.update_failed) == (1, False, None)
        self.run(cluster, client.update_container("web", image="nginx:3"))
        cluster.converge()
        cluster.report_health("web", "unhealthy", "HTTP 500", node_uuid=cluster.nodes[1])
        back = self.listed(cluster)
        assert (back.image, back.revision) == ("nginx:2", 3)
        assert back.update_failed is not None and "HTTP 500" in back.update_failed

    def test_environment_copy_keeps_replicas(self, cluster: Any) -> None:
        """A copy of a container running several instances runs as many."""
        self.created(cluster, replicas=2)
        cluster.converge()
        self.run(cluster, cluster.client.create_environment("s", ["web"], 1))
        copy = self.listed(cluster, "web-s-1")
        assert (copy.replicas, copy.revision) == (2, 0)
