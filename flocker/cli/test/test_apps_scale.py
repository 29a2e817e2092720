"""
Tests for applications with several instances: ``flocker apps scale``,
``--replicas`` of ``apps deploy`` and ``apps update``, and what ``apps ls``
shows of their instances, against the in-memory REST API.
"""

import pytest

from flocker.apiclient import (
    Container,
    ContainerPort,
    ContainerState,
    HealthCheck,
    MountedDataset,
)
from flocker.cli._errors import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT

from ._fake_cluster import (
    D1,
    N1,
    N2,
    Cluster,
    add_dataset,
    assert_error,
    configuration,
    fired,
    invoke,
)

WEB = Container(
    node_uuid=N1,
    name="web",
    image="nginx:1",
    ports=[ContainerPort(external=8080, internal=80)],
)
DB = Container(
    node_uuid=N1,
    name="db",
    image="postgres",
    volumes=[MountedDataset(dataset_id=D1, mountpoint="/data")],
)
HTTP = HealthCheck(kind="http", port=80, path="/healthz")


def deployed(cluster: Cluster, container: Container = WEB) -> Container:
    """Configure ``container`` directly and make its node report it running."""
    created = fired(cluster.client.create_container(container))
    cluster.client.synchronize_state()
    return created


def configured(cluster: Cluster, name: str = "web") -> Container:
    """The configured container ``name``."""
    [found] = [c for c in configuration(cluster)[1] if c.name == name]
    return found


def instances(
    cluster: Cluster, *reports: tuple[object, bool, str | None, str | None]
) -> None:
    """
    Make the nodes report the instances of web: (node, running, health,
    reason) each, as their container agents would.
    """
    cluster.client._state_containers = [
        ContainerState(
            container=WEB.set(node_uuid=node),
            running=running,
            health=health,
            health_reason=reason,
        )
        for node, running, health, reason in reports
    ]


# -- flocker apps scale -----------------------------------------------------------------


def test_scale_runs_more_instances_as_a_new_revision(cluster: Cluster) -> None:
    """
    ``scale NAME N`` configures N instances as the application's next
    revision, says so, and shows how many run.
    """
    deployed(cluster)
    result = invoke(cluster, "apps", "scale", "web", "3")
    assert result.code == EXIT_OK, result
    assert result.out.startswith(
        "scaled application web to 3 instances (revision 1) on 10.0.0.1, running"
    )
    web = configured(cluster)
    assert (web.replicas, web.revision, web.updating) == (3, 1, True)
    assert (web.image, list(web.ports)) == (WEB.image, list(WEB.ports))


def test_scale_down_to_one_instance(cluster: Cluster) -> None:
    """Scaling to 1 runs one instance again, as another revision; the line says 1 instance."""
    deployed(cluster, WEB.set(replicas=3))
    result = invoke(cluster, "apps", "scale", "web", "1")
    assert result.code == EXIT_OK, result
    assert result.out.startswith("scaled application web to 1 instance (revision 1) on ")
    assert configured(cluster).replicas == 1


def test_scale_to_the_same_number_changes_nothing(cluster: Cluster) -> None:
    """Scaling to the number already configured makes no revision, and says so."""
    deployed(cluster, WEB.set(replicas=2))
    result = invoke(cluster, "apps", "scale", "web", "2")
    assert result.code == EXIT_OK, result
    assert result.out.startswith("unchanged application web (already 2 instances) on ")
    assert configured(cluster).revision == 0


def test_scale_json_prints_the_application(cluster: Cluster) -> None:
    """With ``--json``, ``scale`` prints the application's view, with its replicas."""
    deployed(cluster)
    view = invoke(cluster, "--json", "apps", "scale", "web", "64").json()
    assert (view["name"], view["replicas"], view["revision"]) == ("web", 64, 1)


@pytest.mark.parametrize("count", ["0", "65", "-1", "three", "1.5", "", "٣", "1e1"])
def test_scale_refuses_a_bad_number_before_any_request(
    cluster: Cluster, count: str
) -> None:
    """A number of instances that is not a whole number from 1 to 64 is refused at once."""
    deployed(cluster)
    result = invoke(cluster, "apps", "scale", "web", count)
    assert_error(
        result,
        EXIT_ERROR,
        f"bad number of instances {count!r}: give a whole number of instances "
        "from 1 to 64",
    )
    assert not result.connected
    assert configured(cluster).replicas == 1


def test_scale_unknown_application(cluster: Cluster) -> None:
    """Scaling an application that is not configured says so."""
    assert_error(
        invoke(cluster, "apps", "scale", "nope", "2"),
        EXIT_ERROR,
        "unknown application 'nope'",
    )


def test_scale_application_with_volumes_says_why_it_is_refused(
    cluster: Cluster,
) -> None:
    """
    An application with volumes runs once: the control service's refusal
    is the one-line error, exit code 1, and nothing changes.
    """
    add_dataset(cluster)
    deployed(cluster, DB)
    before = configuration(cluster)
    result = invoke(cluster, "apps", "scale", "db", "2")
    assert_error(result, EXIT_ERROR, "cannot run 2 instances of application db: ")
    assert "replicas are for applications without volumes" in result.err
    assert result.err.count("\n") == 1
    assert configuration(cluster) == before


def test_scale_wait_until_the_instances_are_healthy(cluster: Cluster) -> None:
    """
    ``--wait`` waits until all the instances run healthy and the control
    service confirms the revision (once every instance reports it healthy:
    here when the second node does, the first node's two instances being
    healthy from when they run); three instances on two nodes are three
    entries, counted as three.
    """
    deployed(cluster, WEB.set(health=HTTP))
    cluster.client.report_health("web", "healthy")

    def converge(poll: int) -> None:
        if poll == 2:
            cluster.client.synchronize_state()
            cluster.client.report_health("web", "starting", node_uuid=N2)
        if poll == 4:
            cluster.client.report_health("web", "healthy", node_uuid=N2)

    result = invoke(cluster, "apps", "scale", "web", "3", "--wait", on_poll=converge)
    assert result.code == EXIT_OK, result
    progress = result.err.splitlines()
    assert [line.split(" [")[0] for line in progress[:-1]] == [
        "waiting for 3 instances of application web: running, 1 of 3 instances "
        "healthy (1 of 3 instances running)",
        "waiting for 3 instances of application web: running, 2 of 3 instances "
        "healthy (3 of 3 instances running)",
    ]
    assert progress[-1].startswith("3 instances of application web: ")
    assert result.out.startswith(
        "scaled application web to 3 instances (revision 1) on 10.0.0.1, "
        "running, 3 of 3 instances healthy\n"
    )
    assert not configured(cluster).updating


def test_scale_wait_fails_when_the_change_is_rolled_back(cluster: Cluster) -> None:
    """``--wait`` fails with the reason when the control service rolls the change back."""
    deployed(cluster, WEB.set(health=HTTP))

    def fail(poll: int) -> None:
        if poll == 2:
            cluster.client.report_health("web", "unhealthy", "HTTP 503")

    result = invoke(cluster, "apps", "scale", "web", "2", "--wait", on_poll=fail)
    assert_error(
        result,
        EXIT_ERROR,
        "the update of web to revision 1 was rolled back: revision 1 of 'web' was "
        "unhealthy: HTTP 503",
    )
    assert configured(cluster).replicas == 1


def test_scale_wait_times_out_while_an_instance_is_missing(cluster: Cluster) -> None:
    """
    ``--wait`` keeps waiting while fewer instances run than asked for, and
    times out saying how many run (exit code 4; the change is made).
    """
    deployed(cluster)
    cluster.client.report_health("web", "healthy")
    result = invoke(cluster, "apps", "scale", "web", "2", "--wait", "--timeout", "2")
    assert_error(result, EXIT_TIMEOUT, "timed out after 2s waiting for 2 instances of")
    assert "(1 of 2 instances running)" in result.err
    assert configured(cluster).replicas == 2


def test_scale_is_rolled_back_like_any_update(cluster: Cluster) -> None:
    """``apps rollback`` after ``apps scale`` runs the previous number of instances again."""
    deployed(cluster)
    invoke(cluster, "apps", "scale", "web", "4")
    assert invoke(cluster, "apps", "rollback", "web").code == EXIT_OK
    assert (configured(cluster).replicas, configured(cluster).revision) == (1, 2)


# -- flocker apps deploy --replicas -----------------------------------------------------


def test_deploy_with_replicas(cluster: Cluster) -> None:
    """``deploy --replicas N`` configures N instances, its node running the first."""
    result = invoke(
        cluster, "apps", "deploy", "web", "--image", "nginx:1", "--node", "10.0.0.2",
        "--port", "8080:80", "--replicas", "3",
    )  # fmt: skip
    assert result.code == EXIT_OK, result
    web = configured(cluster)
    assert (web.node_uuid, web.replicas, web.revision) == (N2, 3, 0)


def test_deploy_runs_one_instance_by_default(cluster: Cluster) -> None:
    """Without ``--replicas``, an application runs once."""
    result = invoke(cluster, "apps", "deploy", "web", "--image", "i", "--node", "10.0.0.1")
    assert result.code == EXIT_OK, result
    assert configured(cluster).replicas == 1


@pytest.mark.parametrize("count", ["0", "65", "x"])
def test_deploy_bad_replicas_refused_before_any_request(
    cluster: Cluster, count: str
) -> None:
    """A bad ``--replicas`` is refused before the cluster is contacted."""
    result = invoke(
        cluster, "apps", "deploy", "web", "--image", "i", "--node", "10.0.0.1",
        "--replicas", count,
    )  # fmt: skip
    assert_error(result, EXIT_ERROR, f"bad --replicas {count!r}: give a whole number")
    assert not result.connected


def test_deploy_replicas_with_a_volume_refused_before_any_request(
    cluster: Cluster,
) -> None:
    """Several instances of an application mounting a dataset are refused at once, saying why."""
    add_dataset(cluster)
    result = invoke(
        cluster, "apps", "deploy", "db", "--image", "postgres", "--node", "10.0.0.1",
        "--volume", "db:/data", "--replicas", "2",
    )  # fmt: skip
    assert_error(
        result,
        EXIT_ERROR,
        "application db mounts a dataset (--volume), so it runs once: its data is "
        "on one node (--replicas is for applications without volumes)",
    )
    assert not result.connected
    assert configuration(cluster)[1] == []


def test_deploy_one_replica_with_a_volume(cluster: Cluster) -> None:
    """``--replicas 1`` with a volume is the ordinary single instance."""
    add_dataset(cluster)
    result = invoke(
        cluster, "apps", "deploy", "db", "--image", "postgres", "--node", "10.0.0.1",
        "--volume", "db:/data", "--replicas", "1",
    )  # fmt: skip
    assert result.code == EXIT_OK, result
    assert configured(cluster, "db").replicas == 1


# -- flocker apps update --replicas -----------------------------------------------------


def test_update_replicas_alone_or_with_other_fields(cluster: Cluster) -> None:
    """``update --replicas`` changes the number of instances, alone or with other fields."""
    deployed(cluster)
    result = invoke(cluster, "apps", "update", "web", "--replicas", "2")
    assert result.code == EXIT_OK, result
    assert result.out.startswith("updated application web to revision 1 on 10.0.0.1, ")
    assert configured(cluster).replicas == 2
    invoke(cluster, "apps", "update", "web", "--replicas", "5", "--image", "nginx:2")
    web = configured(cluster)
    assert (web.replicas, web.image, web.revision) == (5, "nginx:2", 2)


def test_update_bad_replicas_refused_before_any_request(cluster: Cluster) -> None:
    """A bad ``update --replicas`` is refused before the cluster is contacted."""
    deployed(cluster)
    result = invoke(cluster, "apps", "update", "web", "--replicas", "100")
    assert_error(result, EXIT_ERROR, "bad --replicas '100': give a whole number")
    assert not result.connected


def test_update_replicas_of_an_application_with_volumes_refused(
    cluster: Cluster,
) -> None:
    """The control service's refusal of instances of an application with volumes is the error."""
    add_dataset(cluster)
    deployed(cluster, DB)
    before = configuration(cluster)
    result = invoke(cluster, "apps", "update", "db", "--replicas", "3")
    assert_error(result, EXIT_ERROR, "replicas are for applications without volumes")
    assert configuration(cluster) == before


# -- flocker apps ls ----------------------------------------------------------------------


def test_ls_counts_healthy_instances(cluster: Cluster) -> None:
    """
    An application with several instances says how many of them are
    healthy, each instance of a node running two of them (three instances
    on two nodes) counting for one; ``--json`` has its replicas and each
    instance's report, its configured node's first.
    """
    deployed(cluster, WEB.set(node_uuid=N2, replicas=3))
    cluster.client.report_health("web", "unhealthy", "HTTP 503", node_uuid=N1)
    cluster.client.report_health("web", "healthy", node_uuid=N2)
    result = invoke(cluster, "apps", "ls")
    assert "running, 2 of 3 instances healthy" in result.out.splitlines()[1]
    [view] = invoke(cluster, "--json", "apps", "ls").json()
    assert (view["state"], view["running"], view["replicas"]) == (
        "running, 2 of 3 instances healthy",
        True,
        3,
    )
    assert view["instances"] == [
        {
            "node_uuid": str(N2),
            "node_address": "10.0.0.2",
            "running": True,
            "health": "healthy",
            "health_reason": None,
        },
        {
            "node_uuid": str(N2),
            "node_address": "10.0.0.2",
            "running": True,
            "health": "healthy",
            "health_reason": None,
        },
        {
            "node_uuid": str(N1),
            "node_address": "10.0.0.1",
            "running": True,
            "health": "unhealthy",
            "health_reason": "HTTP 503",
        },
    ]


def test_ls_counts_running_instances_without_health(cluster: Cluster) -> None:
    """
    Instances whose nodes report no health are counted as running (both
    of the two on node 1, of three on two nodes); a stopped one is not.
    """
    deployed(cluster, WEB.set(replicas=3))
    instances(cluster, (N1, True, None, None), (N2, False, None, None))
    [view] = invoke(cluster, "--json", "apps", "ls").json()
    assert view["state"] == "running, 2 of 3 instances running"


def test_ls_replicated_application_running_nowhere(cluster: Cluster) -> None:
    """
    An application with several instances none of which runs is
    ``stopped`` when some node reports one, else ``pending``; an update
    in progress is still said.
    """
    deployed(cluster, WEB.set(replicas=2))
    instances(cluster, (N2, False, None, None))
    [view] = invoke(cluster, "--json", "apps", "ls").json()
    assert (view["state"], view["running"]) == ("stopped", False)
    instances(cluster)
    invoke(cluster, "apps", "update", "web", "--image", "nginx:2")
    [view] = invoke(cluster, "--json", "apps", "ls").json()
    assert view["state"] == "pending; updating to revision 1"


def test_ls_single_instance_unchanged(cluster: Cluster) -> None:
    """An application with one instance shows its health as before, replicas 1 and its instance."""
    deployed(cluster)
    cluster.client.report_health("web", "healthy")
    [view] = invoke(cluster, "--json", "apps", "ls").json()
    assert (view["state"], view["replicas"]) == ("running, healthy", 1)
    assert [(i["node_uuid"], i["health"]) for i in view["instances"]] == [
        (str(N1), "healthy")
    ]
