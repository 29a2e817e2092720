"""
What ``flocker apps`` shows of an application: `app_view`, the dict that
``--json`` prints and the table is made from, and the one line a command
prints about the application it changed.

An application's state is ``running`` or ``stopped`` as its node reports
it, ``pending`` while no node reports it, or ``moving`` while only another
node does (or ``pulling image`` / ``image pull failed: …`` while its node
gets its image).  A running application's health follows, as its node
probes it (``running, starting``, ``running, healthy``, ``running,
unhealthy: HTTP 503``); then ``updating to revision N`` while an update
waits for the new instance to be healthy, and ``update rolled back:
REASON`` when the control service rolled the last update back by itself.

An application with several instances (``replicas``) runs one on each of
several nodes, and with more instances than nodes the extra ones double up
on them (``flocker.apiclient.instance_placement``); while any runs, its
state counts them: ``running, 2 of 3 instances healthy`` as their nodes
probe them (``running, 2 of 3 instances running`` when no node reports
health).  The control service lists each instance whose health its node
reports; a node it lists once without health (its agent reports none)
counts for each of the instances placed on it (`counted_instances`).
``--json`` lists what the nodes report (``instances``: one entry per
instance listed, with its node, whether it runs, its health), the
configured node's first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from ..apiclient import (
    Container,
    ContainerState,
    ImagePullState,
    health_to_json,
    instance_placement,
)
from ._command import Context
from ._format import write_json
from ._resolve import dataset_name

__all__ = ["all_views", "app_view", "counted_instances", "print_one", "view_of"]


def app_view(
    container: Container,
    states: list[ContainerState],
    addresses: dict[UUID, str | None],
    names: dict[UUID, str | None],
    pulls: Mapping[tuple[UUID, str], ImagePullState] | None = None,
) -> dict[str, Any]:
    """
    An application as ``--json`` shows it (and the table is made from).

    :param pulls: (node, application name) → the pull of its image there,
        for the images being pulled or that failed to be.
    """
    reported = _ordered(
        container.node_uuid, [s for s in states if s.container.name == container.name]
    )
    here = [s for s in reported if s.container.node_uuid == container.node_uuid]
    running = [s for s in reported if s.running]
    pull = (pulls or {}).get((container.node_uuid, container.name))
    if container.replicas > 1 and running:
        counted = counted_instances(container, reported, addresses)
        state = _instances_state(container.replicas, [(s, n) for s, n in counted if s.running])
    elif here:
        state = _running_state(here[0])
    elif pull is not None:
        state = "pulling image" if pull.pulling else f"image pull failed: {pull.reason}"
    elif reported:
        state = "moving" if container.replicas == 1 else "stopped"
    else:
        state = "pending"
    if container.updating:
        state += f"; updating to revision {container.revision}"
    if container.update_failed is not None:
        state += f"; update rolled back: {container.update_failed}"
    return {
        "image_pull": None
        if pull is None or here
        else {
            "pulling": pull.pulling,
            "reason": pull.reason,
            "attempts": pull.attempts,
        },
        "name": container.name,
        "node": str(container.node_uuid),
        "node_address": addresses.get(container.node_uuid),
        "image": container.image,
        "running": bool(running if container.replicas > 1 else here and here[0].running),
        "state": state,
        "replicas": container.replicas,
        "instances": [
            {
                "node_uuid": str(s.container.node_uuid),
                "node_address": addresses.get(s.container.node_uuid),
                "running": s.running,
                "health": s.health,
                "health_reason": s.health_reason,
            }
            for s in reported
        ],
        "ports": [
            {"external": p.external, "internal": p.internal} for p in container.ports
        ],
        "volumes": [
            {
                "dataset_id": str(v.dataset_id),
                "name": names.get(v.dataset_id),
                "mountpoint": v.mountpoint,
            }
            for v in container.volumes
        ],
        "environment": dict(container.environment),
        "links": [
            {"alias": x.alias, "local_port": x.local_port, "remote_port": x.remote_port}
            for x in container.links
        ],
        "health": here[0].health if here else None,
        "health_reason": here[0].health_reason if here else None,
        "health_check": None
        if container.health is None
        else health_to_json(container.health),
        "revision": container.revision,
        "updating": container.updating,
        "update_failed": container.update_failed,
        "previous_image": container.previous_image,
    }


def _ordered(home: UUID, reported: list[ContainerState]) -> list[ContainerState]:
    """The instances reported, the one on the configured node first, then by node UUID."""
    return sorted(
        reported,
        key=lambda s: (s.container.node_uuid != home, str(s.container.node_uuid)),
    )


def counted_instances(
    container: Container, reported: list[ContainerState], nodes: Iterable[UUID]
) -> list[tuple[ContainerState, int]]:
    """
    Each entry the control service lists for a container, with how many of
    its instances it stands for: one (an entry per instance, with that
    instance's health), except a node's only entry without health, which
    stands for every instance placed on that node (a node that reports no
    health for them is listed once).

    :param nodes: the cluster's nodes, as the instances are placed on them.
    """
    placed = Counter(node for node, _ in instance_placement(container, nodes))
    entries = Counter(s.container.node_uuid for s in reported)

    def weight(state: ContainerState) -> int:
        node = state.container.node_uuid
        if state.health is None and entries[node] == 1:
            return max(1, placed.get(node, 1))
        return 1

    return [(s, weight(s)) for s in reported]


def _instances_state(replicas: int, running: list[tuple[ContainerState, int]]) -> str:
    """
    ``running, H of N instances healthy`` (or ``R of N instances running``
    when no node reports the health of its instances).

    :param running: the running entries, each with how many instances it
        stands for (`counted_instances`).
    """
    if all(s.health is None for s, _ in running):
        count = min(replicas, sum(n for _, n in running))
        return f"running, {count} of {replicas} instances running"
    healthy = min(replicas, sum(n for s, n in running if s.health == "healthy"))
    return f"running, {healthy} of {replicas} instances healthy"


def _running_state(reported: ContainerState) -> str:
    """``running`` or ``stopped``, then the health its node reported, if any."""
    if not reported.running:
        return "stopped"
    if reported.health is None:
        return "running"
    if reported.health == "unhealthy" and reported.health_reason:
        return f"running, unhealthy: {reported.health_reason}"
    return f"running, {reported.health}"


async def all_views(context: Context) -> list[dict[str, Any]]:
    """Every configured application's view."""
    client = context.client
    containers = await client.list_containers_configuration()
    states = await client.list_containers_state()
    nodes = await client.list_nodes()
    addresses = {n.uuid: n.host for n in nodes}
    pulls = {(n.uuid, name): pull for n in nodes for name, pull in n.image_pulls.items()}
    datasets = (await client.list_datasets_configuration()).datasets
    names = {k: dataset_name(v) for k, v in datasets.items()}
    return [app_view(c, states, addresses, names, pulls) for c in containers]


async def view_of(context: Context, name: str) -> dict[str, Any] | None:
    """One application's view, or ``None`` if it is not configured."""
    for view in await all_views(context):
        if view["name"] == name:
            return view
    return None


def print_one(
    context: Context, view: dict[str, Any], verb: str, detail: str = ""
) -> None:
    """
    Say what happened to an application (or print it as JSON): ``VERB
    application NAME[ DETAIL] on NODE, STATE``.
    """
    if context.json:
        write_json(context.out, view)
        return
    where = view["node_address"] or view["node"]
    detail = f" {detail}" if detail else ""
    context.out.write(
        f"{verb} application {view['name']}{detail} on {where}, {view['state']}\n"
    )
