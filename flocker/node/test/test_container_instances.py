"""
Tests for a replicated application running more instances than there are
nodes: the extra instances (``web..2``…) a node runs as containers of
their own, probed, routed to, updated in turn and scaled down like the
others.
"""

from __future__ import annotations

from pyrsistent import pmap

from flocker.control import (
    Application,
    ApplicationHealth,
    Deployment,
    DeploymentState,
    NodeState,
    Port,
)
from flocker.node import NoOp, changes_of
from flocker.node.containers import (
    DrainApplication,
    RemoveApplication,
    SetRoutes,
    StartApplication,
    applications_here,
    container_spec,
)
from flocker.route import Route, Target

from .test_containers import ADDRESS, A, B, Nodes, probed, result

WEB = Application(
    name="web",
    image="flocker-test/busybox:1",
    ports=[Port(internal_port=80, external_port=8080)],
    replicas=3,
)


def configured(application: Application = WEB) -> Deployment:
    """A configuration with ``web`` on node A."""
    return Deployment().add_application(application, A)


def reporting(
    nodes: tuple[str, ...] = (A, B), **health: dict[str, ApplicationHealth]
) -> DeploymentState:
    """
    ``nodes`` report (their applications known); ``health`` by node name
    (A, B): instance name → its health.
    """
    state = DeploymentState()
    for name, uuid in (("A", A), ("B", B)):
        if uuid not in nodes:
            continue
        state = state.update_node(
            NodeState(
                uuid=uuid,
                hostname=ADDRESS[uuid],
                applications={},
                health=health.get(name, {}),
            )
        )
    return state


def healthy(
    instance: str, port: int, revision: int | None = 0, status: str = "healthy"
) -> dict[str, ApplicationHealth]:
    """One instance's health: port 80 published on ``port``."""
    return {
        instance: ApplicationHealth(
            application=instance, status=status, revision=revision, ports={80: port}
        )
    }


def names(nodes: Nodes, node: str) -> list[str]:
    """The names of the containers on ``node``."""
    return sorted(s.name for s in result(nodes.deployers[node].runtime.list_containers()))


def test_extra_instances_double_up_in_ring_order() -> None:
    """
    Three instances on two nodes run as ``web`` and ``web..2`` on node A
    (the application's node) and ``web`` on B; five run three on A and
    two on B.
    """
    assert set(applications_here(A, configured(), reporting())) == {"web", "web..2"}
    assert set(applications_here(B, configured(), reporting())) == {"web"}
    five = configured(WEB.set(replicas=5))
    assert set(applications_here(A, five, reporting())) == {"web", "web..2", "web..3"}
    assert set(applications_here(B, five, reporting())) == {"web", "web..2"}
    assert all(app == WEB for app in applications_here(A, configured(), reporting()).values())


def test_every_instance_runs_on_a_single_node() -> None:
    """On a single reporting node, all the replicas run there."""
    only_a = reporting((A,))
    assert set(applications_here(A, configured(), only_a)) == {"web", "web..2", "web..3"}
    assert applications_here(B, configured(), only_a) == {}


def test_an_extra_instance_is_a_container_named_after_it() -> None:
    """
    Each instance placed here is started as a container of its own, named
    by its instance name; the container agent reports the application once.
    """
    nodes = Nodes()
    plan = nodes.plan(A, configured(), reporting())
    spec = container_spec(WEB, ADDRESS[A], {}, "web..2")
    assert spec is not None and spec.name == "web..2"
    assert StartApplication(spec=spec) in changes_of(plan)
    nodes.converge(A, configured(), reporting())
    assert names(nodes, A) == ["web", "web..2"]
    local = result(nodes.deployers[A].discover_state(reporting()))
    assert set(local.shared_state_changes().applications or {}) == {"web"}


def test_health_is_reported_per_instance() -> None:
    """
    The health probes watch each instance, with the application's check,
    and the node reports each under its instance name.
    """
    nodes, clock, _ = probed()
    nodes.converge(A, configured(), reporting())
    nodes.deployers[A].configuration = configured()
    result(nodes.deployers[A].discover_state(reporting()))
    clock.advance(0)
    local = result(nodes.deployers[A].discover_state(reporting()))
    health = local.shared_state_changes().health or pmap()
    assert set(health) == {"web", "web..2"}
    assert {h.application for h in health.values()} == {"web", "web..2"}
    assert all(h.status == "healthy" and h.revision == 0 for h in health.values())


def test_scaling_down_drains_then_removes_the_extra_instance() -> None:
    """
    An extra instance no longer placed (fewer replicas) is drained first
    when the probes found it healthy, like any container no longer wanted,
    and removed at once without probes; the first instance on the node
    stays.
    """
    nodes, clock, _ = probed()
    nodes.converge(A, configured(), reporting())
    nodes.deployers[A].configuration = configured()
    result(nodes.deployers[A].discover_state(reporting()))
    clock.advance(0)
    scaled = configured().update_application(WEB.set(replicas=2))
    assert set(applications_here(A, scaled, reporting())) == {"web"}
    assert nodes.converge(A, scaled, reporting()) == DrainApplication(name="web..2")
    unprobed = Nodes()
    unprobed.converge(A, configured(), reporting())
    assert unprobed.plan(A, scaled, reporting()) == RemoveApplication(
        name="web..2", background=True
    )
    unprobed.converge(A, scaled, reporting())
    assert names(unprobed, A) == ["web"]


def test_an_update_rolls_over_instances_on_one_node_one_at_a_time() -> None:
    """
    On a single node, an update replaces ``web`` first while ``web..2``
    and ``web..3`` serve; ``web..2`` waits until ``web`` reports the new
    revision healthy, then ``web..3`` until ``web..2`` does.
    """
    only_a = reporting((A,))
    nodes = Nodes()
    nodes.converge(A, configured(), only_a)
    updated = configured().update_application(WEB.set(environment={"V": "2"}))
    first = changes_of(nodes.plan(A, updated, only_a))
    assert RemoveApplication(name="web") in first
    assert RemoveApplication(name="web..2") not in first
    assert RemoveApplication(name="web..3") not in first
    one = reporting((A,), A=healthy("web", 40001, revision=1))
    second = changes_of(nodes.plan(A, updated, one))
    assert RemoveApplication(name="web..2") in second
    assert RemoveApplication(name="web..3") not in second
    two = reporting((A,), A={**healthy("web", 40001, 1), **healthy("web..2", 40002, 1)})
    assert RemoveApplication(name="web..3") in changes_of(nodes.plan(A, updated, two))


def test_an_update_rolls_over_doubled_up_instances_in_placement_order() -> None:
    """
    With three instances on two nodes the update goes A's ``web``, B's
    ``web``, then A's ``web..2``: the extra instance waits for B's too.
    """
    nodes = Nodes()
    nodes.converge(A, configured(), reporting())
    nodes.converge(B, configured(), reporting())
    updated = configured().update_application(WEB.set(environment={"V": "2"}))
    assert nodes.plan(B, updated, reporting()) == NoOp()
    first_done = reporting(A=healthy("web", 40001, revision=1))
    assert RemoveApplication(name="web..2") not in changes_of(nodes.plan(A, updated, first_done))
    assert RemoveApplication(name="web") in changes_of(nodes.plan(B, updated, first_done))
    both = reporting(A=healthy("web", 40001, 1), B=healthy("web", 40002, 1))
    assert RemoveApplication(name="web..2") in changes_of(nodes.plan(A, updated, both))


def test_an_update_rolls_over_without_the_applications_node_while_it_is_down() -> None:
    """
    While the application's own node does not report (it is down), the
    instances on the other nodes are updated without waiting for its
    instance's turn; once it reports again they wait for it as before.
    """
    two = WEB.set(replicas=2)
    nodes = Nodes()
    nodes.converge(B, configured(two), reporting())
    updated = configured(two).update_application(two.set(environment={"V": "2"}))
    assert nodes.plan(B, updated, reporting((A, B))) == NoOp()
    assert RemoveApplication(name="web") in changes_of(nodes.plan(B, updated, reporting((B,))))


def test_routes_go_to_every_healthy_instance_on_a_node() -> None:
    """
    A node running two healthy instances gives the route two targets on
    its address, beside the other node's; a stopping one gets none.
    """
    nodes = Nodes()
    state = reporting(
        A={**healthy("web", 40001), **healthy("web..2", 40002)},
        B=healthy("web", 40003),
    )
    route = Route(
        external_port=8080,
        targets=[
            Target(host=ADDRESS[A], port=40001),
            Target(host=ADDRESS[A], port=40002),
            Target(host=ADDRESS[B], port=40003),
        ],
    )
    assert SetRoutes(routes={8080: route}) in changes_of(
        nodes.plan(B, configured(), state, routes=True)
    )
    stopping = reporting(
        A={**healthy("web", 40001), **healthy("web..2", 40002, status="stopping")},
    )
    fewer = Route(external_port=8080, targets=[Target(host=ADDRESS[A], port=40001)])
    assert SetRoutes(routes={8080: fewer}) in changes_of(
        nodes.plan(B, configured(), stopping, routes=True)
    )
