"""
A dataset as the ``flocker`` commands show it, and waiting until one is
mounted: what ``flocker datasets``, ``flocker clone`` and the replica
commands share.

A dataset's state is ``pending`` (configured, no node reports it yet),
``mounted`` (its primary node reports it mounted, at PATH), ``fenced`` (its
primary node lost the control service and stopped exposing it: a failover
may follow), ``moving`` (another node still has it), or ``deleting``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ..apiclient import Dataset, DatasetsConfiguration, DatasetState, DivergedCopy
from ._command import Context
from ._errors import CLIError
from ._format import format_size
from ._resolve import dataset_name, node_label
from ._wait import wait_until

__all__ = ["cluster_view", "current_view", "dataset_view", "wait_mounted"]


def _path(state: DatasetState) -> str | None:
    """Where a node mounted a dataset."""
    return None if state.path is None else str(state.path.path)


def dataset_view(
    dataset: Dataset,
    states: list[DatasetState],
    addresses: dict[UUID, str | None],
) -> dict[str, Any]:
    """A dataset as ``--json`` shows it (and the table is made from)."""
    here = [s for s in states if s.dataset_id == dataset.dataset_id]
    mounted = [s for s in here if s.primary == dataset.primary and s.path is not None]
    fenced = [s for s in here if s.primary == dataset.primary and s.fenced]
    elsewhere = [s for s in here if s.primary != dataset.primary]
    if dataset.deleted:
        state = "deleting"
    elif mounted:
        state = "mounted"
    elif fenced:
        state = "fenced"
    elif elsewhere:
        state = "moving"
    else:
        state = "pending"
    reported = {r.node_uuid: r for m in mounted for r in m.replicas}
    replicas: list[dict[str, Any]] = []
    for node in dataset.replicas:
        replica = reported.get(node)
        replicas.append(
            {
                "node_uuid": str(node),
                "address": addresses.get(node),
                "last_snapshot": None if replica is None else replica.last_snapshot,
                "lag_seconds": None if replica is None else replica.lag_seconds,
            }
        )
        if replica is not None and replica.set_aside:
            replicas[-1]["set_aside"] = list(replica.set_aside)
    diverged: dict[UUID, DivergedCopy] = {}
    for state_here in here:
        for copy in state_here.diverged:
            diverged.setdefault(copy.node_uuid, copy)
    view: dict[str, Any] = {
        "dataset_id": str(dataset.dataset_id),
        "name": dataset_name(dataset),
        "metadata": dict(dataset.metadata),
        "maximum_size": dataset.maximum_size,
        "primary": str(dataset.primary),
        "primary_address": addresses.get(dataset.primary),
        "state": state,
        "path": _path(mounted[0]) if mounted else None,
        "reported_on": sorted(str(s.primary) for s in here),
        "replicas": replicas,
        "diverged": [
            {
                "node_uuid": str(copy.node_uuid),
                "address": addresses.get(copy.node_uuid),
                "epoch": copy.epoch,
                "last_snapshot": copy.last_snapshot,
                **({"set_aside": list(copy.set_aside)} if copy.set_aside else {}),
            }
            for copy in sorted(diverged.values(), key=lambda c: str(c.node_uuid))
        ],
        "epoch": dataset.epoch,
    }
    if dataset.failover_snapshot is not None:
        view["failover_snapshot"] = dataset.failover_snapshot
    return view


async def cluster_view(
    context: Context,
) -> tuple[DatasetsConfiguration, list[DatasetState], dict[UUID, str | None]]:
    """The configured datasets, the reported ones and node addresses."""
    client = context.client
    configuration = await client.list_datasets_configuration()
    states = await client.list_datasets_state()
    nodes = await client.list_nodes()
    return configuration, states, {n.uuid: n.host for n in nodes}


async def current_view(context: Context, dataset_id: UUID) -> dict[str, Any] | None:
    """The current view of one dataset, or ``None`` if it is gone."""
    configuration, states, addresses = await cluster_view(context)
    dataset = configuration.datasets.get(dataset_id)
    return None if dataset is None else dataset_view(dataset, states, addresses)


async def wait_mounted(
    context: Context, dataset_id: UUID, node: str, timeout: float
) -> None:
    """
    Wait until the dataset is mounted on its primary node, showing the
    bytes received so far and the rate while a move's stream flows.
    """
    seen: list[tuple[float, int]] = []

    async def progress() -> str:
        """Bytes received so far and the rate, while a move's stream flows."""
        transfers = (await context.client.list_transfers()).transfers
        mine = [t for t in transfers if t.dataset_id == dataset_id]
        if not mine:
            return ""
        received = mine[0].bytes
        now = context.clock.seconds()
        rate = ""
        if seen and now > seen[-1][0] and received >= seen[-1][1]:
            rate = f" at {format_size(int((received - seen[-1][1]) / (now - seen[-1][0])))}/s"
        seen.append((now, received))
        size = mine[0].size
        of = f" of {format_size(size)}" if size else ""
        return f", {format_size(received)}{of} received{rate}"

    async def probe() -> tuple[bool, str]:
        configuration, states, addresses = await cluster_view(context)
        dataset = configuration.datasets.get(dataset_id)
        if dataset is None:
            raise CLIError(f"dataset {dataset_id} disappeared from the configuration")
        view = dataset_view(dataset, states, addresses)
        if view["state"] == "mounted":
            return True, f"mounted at {view['path']}"
        where = (
            ", ".join(node_label(addresses, UUID(n)) for n in view["reported_on"])
            or "no node"
        )
        return False, f"{view['state']} (reported on {where}){await progress()}"

    await wait_until(
        context.clock,
        context.err,
        f"dataset {str(dataset_id)[:8]} mounted on {node}",
        probe,
        timeout,
    )
