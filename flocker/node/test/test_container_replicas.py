"""
Tests for replicated (stateless) applications on the container agent: an
instance on each node `instance_nodes` places, routes over the healthy
ones, and updates that roll over the instances one at a time.
"""

from __future__ import annotations

import attr
from twisted.internet.task import Clock

from flocker.control import (
    Application,
    ApplicationHealth,
    Deployment,
    DeploymentState,
    HealthCheck,
    NodeState,
    Port,
)
from flocker.node import NoOp, changes_of
from flocker.node._health import HealthProbes
from flocker.node.containers import (
    DrainApplication,
    RemoveApplication,
    ResumeApplication,
    SetRoutes,
    StartApplication,
    applications_here,
)
from flocker.route import Route, Target

from .test_containers import ADDRESS, A, B, Nodes, RecordingProbe, result

WEB = Application(
    name="web",
    image="flocker-test/busybox:1",
    ports=[Port(internal_port=80, external_port=8080)],
    replicas=2,
)


def configured(application: Application = WEB) -> Deployment:
    """A configuration with ``web`` on node A."""
    return Deployment().add_application(application, A)


def reporting(**health: ApplicationHealth | None) -> DeploymentState:
    """Both nodes report (their applications known); ``health`` by node name (A, B)."""
    state = DeploymentState()
    for name, uuid in (("A", A), ("B", B)):
        report = health.get(name)
        state = state.update_node(
            NodeState(
                uuid=uuid,
                hostname=ADDRESS[uuid],
                applications={},
                health={} if report is None else {"web": report},
            )
        )
    return state


def healthy(port: int, revision: int | None = 0, status: str = "healthy") -> ApplicationHealth:
    """``web``'s instance, healthy, its port 80 published on ``port``."""
    return ApplicationHealth(
        application="web", status=status, revision=revision, ports={80: port}
    )


def test_replicas_run_on_the_following_nodes() -> None:
    """
    An application with two replicas configured on node A runs on A and B
    once both nodes' container agents report; with one replica only on A.
    """
    assert set(applications_here(B, configured(), reporting())) == {"web"}
    assert set(applications_here(A, configured(), reporting())) == {"web"}
    single = configured(WEB.set(replicas=1))
    assert applications_here(B, single, reporting()) == {}
    nodes = Nodes()
    change = nodes.plan(B, configured(), reporting())
    assert isinstance(change, StartApplication) and change.spec.name == "web"


def test_a_node_that_does_not_report_runs_no_replica() -> None:
    """A node whose container agent has not reported is given no instance."""
    only_a = DeploymentState().update_node(NodeState(uuid=A, applications={}))
    assert applications_here(B, configured(), only_a) == {}


def test_routes_spread_over_healthy_instances_of_any_revision() -> None:
    """
    Every router sends the port to both healthy instances, also while one
    of them runs a newer revision (capacity is kept during a roll-over);
    one that is stopping gets none.
    """
    nodes = Nodes()
    both = reporting(A=healthy(40001), B=healthy(40002))
    route = Route(
        external_port=8080,
        targets=[Target(host=ADDRESS[A], port=40001), Target(host=ADDRESS[B], port=40002)],
    )
    assert SetRoutes(routes={8080: route}) in changes_of(
        nodes.plan(B, configured(), both, routes=True)
    )
    updated = configured().update_application(WEB.set(environment={"V": "2"}))
    rolling = reporting(A=healthy(40003, revision=1), B=healthy(40002, revision=None))
    mixed = Route(
        external_port=8080,
        targets=[Target(host=ADDRESS[A], port=40003), Target(host=ADDRESS[B], port=40002)],
    )
    assert SetRoutes(routes={8080: mixed}) in changes_of(
        nodes.plan(B, updated, rolling, routes=True)
    )
    draining = reporting(A=healthy(40003, revision=1), B=healthy(40002, None, "stopping"))
    newest = Route(external_port=8080, targets=[Target(host=ADDRESS[A], port=40003)])
    assert SetRoutes(routes={8080: newest}) in changes_of(
        nodes.plan(B, updated, draining, routes=True)
    )


def test_an_update_rolls_over_the_instances_one_at_a_time() -> None:
    """
    An update replaces instance 0 (node A) first; node B's instance waits,
    serving, until A reports the new revision healthy, and then is replaced.
    """
    nodes = Nodes()
    nodes.converge(A, configured(), reporting())
    nodes.converge(B, configured(), reporting())
    updated = configured().update_application(WEB.set(environment={"V": "2"}))
    first = nodes.plan(A, updated, reporting())
    assert RemoveApplication(name="web") in changes_of(first)
    starting = reporting(A=healthy(40003, revision=1, status="starting"))
    assert nodes.plan(B, updated, starting) == NoOp()
    ready = reporting(A=healthy(40003, revision=1))
    assert RemoveApplication(name="web") in changes_of(nodes.plan(B, updated, ready))
    assert [s.name for s in result(nodes.deployers[B].runtime.list_containers())] == ["web"]


SINGLE = WEB.set(replicas=1)


def test_a_single_stateless_instance_is_updated_beside_a_new_one() -> None:
    """
    An update of an application without volumes running once first starts
    the new revision on the node after its own (the surge node), replaces
    the old instance only once that one is healthy, and the surge node's
    instance goes once the application's node runs the new revision
    healthy: connections always have a healthy instance to go to.
    """
    nodes = Nodes()
    nodes.converge(A, configured(SINGLE), reporting())
    updated = configured(SINGLE).update_application(SINGLE.set(environment={"V": "2"}))
    old_here = reporting(A=healthy(40001, revision=None))
    assert set(applications_here(B, updated, old_here)) == {"web"}
    assert nodes.plan(A, updated, old_here) == NoOp()  # waits for the surge instance
    start = nodes.plan(B, updated, old_here)
    assert isinstance(start, StartApplication)
    surge_ready = reporting(A=healthy(40001, revision=None), B=healthy(40002, revision=1))
    assert RemoveApplication(name="web") in changes_of(nodes.plan(A, updated, surge_ready))
    replaced = reporting(A=healthy(40003, revision=1), B=healthy(40002, revision=1))
    assert applications_here(B, updated, replaced) == {}


def test_a_single_node_updates_in_place() -> None:
    """With no other node, the single instance is replaced where it is."""
    nodes = Nodes()
    only_a = DeploymentState().update_node(NodeState(uuid=A, applications={}))
    nodes.converge(A, configured(SINGLE), only_a)
    updated = configured(SINGLE).update_application(SINGLE.set(environment={"V": "2"}))
    assert RemoveApplication(name="web") in changes_of(nodes.plan(A, updated, only_a))


def test_an_update_keeping_the_container_needs_no_surge_instance() -> None:
    """
    An update that leaves the container as it is (a new health check) is
    reported at the new revision by the application's node at once: no
    instance is started beside it.
    """
    check = HealthCheck(kind="http", port=80, path="/healthz")
    updated = configured(SINGLE).update_application(SINGLE.set(health=check))
    updated_app, _ = updated.get_application("web")
    assert updated_app.updating and updated_app.revision == 1
    same = reporting(A=healthy(40001, revision=1, status="starting"))
    assert applications_here(B, updated, same) == {}
    old = reporting(A=healthy(40001, revision=None))
    assert set(applications_here(B, updated, old)) == {"web"}  # not reported yet: surge


def test_a_draining_replica_serves_again_while_an_earlier_one_is_not_healthy() -> None:
    """
    A replica that began to drain for its turn while the instance before it
    was healthy serves again (it is resumed) when that instance stops being
    healthy, instead of staying stopping while it waits.
    """
    nodes = Nodes()
    clock, probe = Clock(), RecordingProbe()
    nodes.deployers[B] = attr.evolve(nodes.deployers[B], health=HealthProbes(clock, probe))
    nodes.converge(B, configured(), reporting())
    result(nodes.deployers[B].discover_state(reporting()))  # the probes watch it
    clock.advance(0)  # and find it healthy
    updated = configured().update_application(WEB.set(environment={"V": "2"}))
    ready = reporting(A=healthy(40003, revision=1))
    assert nodes.converge(B, updated, ready) == DrainApplication(name="web")
    restarted = reporting(A=healthy(40004, revision=1, status="starting"))
    assert ResumeApplication(name="web") in changes_of(nodes.plan(B, updated, restarted))
