"""The dataset agent: one object owning a node's dataset convergence.

`DatasetAgent` builds and holds the parts of ``flocker-dataset-agent`` — the
deployer and its mover, the convergence loop, the transfer receiver and the
connection to the control service — and carries the agent's policies as
methods:

* `in_use`: whether something on the node still uses a dataset (a lease
  or an application), so a move's final increment and a rollback wait;
* `stopping`: whether an application using a dataset here is draining
  before it stops, so a move's pass waits a moment for it instead of
  ending (``_mover.STOP_WAIT``);
* `handoff`: the moment this node stops exposing a dataset it moves away,
  reported at once so the cluster state never shows it on two nodes;
* `authorize`: whether the configuration sends this dataset here from
  the pushing node at all (a move to this node from a node that holds a
  copy, or a standing replica's round from the configured primary);
  everything else is refused and logged, so no node can push a dataset
  into existence elsewhere;
* `refuse`: which pushed streams the receiver turns away to keep data
  that must stay;
* `replace`: which full streams may replace a stale local copy;
* `stored`: what a received stream changes here (a final one exposes the
  dataset);
* `cluster_updated`: a pushed configuration brings a fence that is up down
  (``_fence``: after ``fence-after`` seconds without a word from the
  control service, the datasets that fail over automatically are fenced).

``flocker.node.script`` only reads ``agent.yml`` and builds one of these.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import attr
from eliot import Field, MessageType
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from flocker.ca import TLSFiles
from flocker.control import (
    AgentAMPClient,
    Deployment,
    DeploymentState,
    NodeState,
    instance_base,
)
from flocker.volume import DatasetInfo, IVolumeBackend
from flocker.volume._transfer_wire import TransferHeader
from flocker.volume.transfer import TransferReceiver, push, transfer_service

from ._agent_core import ControlledAgent
from ._control_connection import ControlAddress, control_addresses_tuple
from ._dataset_changes import PushDataset
from ._fence import DEFAULT_FENCE_AFTER, Fence
from ._loop import ConvergenceLoop
from ._mover import DatasetMover
from ._progress import ConvergenceProgress
from ._roles import DIVERGED, FENCED, PRIMARY, REPLICA, IDatasetRoles
from ._snapshots import SnapshotOperations
from .datasets import DatasetDeployer, DatasetLocalState

TRANSFER_UNAUTHORIZED = MessageType(
    "flocker:node:transfer:unauthorized",
    [
        Field.for_types("dataset_id", [str], "The dataset the stream was for."),
        Field.for_types("peer", [str], "The pushing node's UUID (its certificate)."),
        Field.for_types("final", [bool], "Whether the stream claimed to end a move."),
        Field.for_types("reason", [str], "Why the stream was refused."),
    ],
    "A pushed stream the configuration does not send here was refused.",
)


def transfer_unauthorized(
    node_uuid: str,
    peer: str,
    header: TransferHeader,
    configuration: Deployment | None,
    cluster_state: DeploymentState | None,
) -> str | None:
    """
    Why the configuration does not let ``peer`` push this stream to
    ``node_uuid``, or ``None`` if it does.

    A stream is let in only when the configuration sends that dataset here
    from that sender: either this node is its configured primary (a move,
    the final increment included) and the sender holds a copy (it reports
    one, or the configuration keeps one there, as a move does on the old
    primary); or this node is a standing replica of it and the sender is
    its configured primary (a replication round; also the rounds that
    bring a diverged copy back once it is named a replica again).  A
    replica never receives a final stream: a move to it makes it the
    configured primary first.
    """
    dataset_id = header.dataset_id
    if configuration is None:
        return "the configuration is not known yet"
    try:
        dataset, primary = configuration.get_dataset(dataset_id)
    except KeyError:
        return f"dataset {dataset_id} is not configured"
    if dataset.deleted:
        return f"dataset {dataset_id} is deleted"
    if peer == node_uuid:
        return "a node does not push to itself"
    if primary == node_uuid:
        holders = cluster_state.holders(dataset_id) if cluster_state is not None else []
        configured_there = dataset_id in configuration.get_node(peer).manifestations
        if peer in holders or configured_there:
            return None
        return (
            f"dataset {dataset_id} moves here, but node {peer} holds no copy of it "
            "to send"
        )
    if node_uuid in configuration.replicas_of(dataset_id):
        if peer != primary:
            return (
                f"this node is a standing replica of dataset {dataset_id}, whose "
                f"primary is node {primary}, not node {peer}"
            )
        if header.final:
            return (
                f"this node is a standing replica of dataset {dataset_id}: a final "
                "stream would expose it here"
            )
        return None
    return (
        f"dataset {dataset_id} is configured on node {primary}, not sent to this node"
    )


def application_stopping(
    node_uuid: str, dataset_id: str, cluster_state: DeploymentState
) -> bool:
    """
    Whether the node reports an application it runs with the dataset as a
    volume, one of whose instances here is *stopping* (draining before its
    container agent stops it).
    """
    node = cluster_state.get_node(node_uuid)
    using = {
        name
        for name, application in (node.applications or {}).items()
        if any(volume.dataset_id == dataset_id for volume in application.volumes)
    }
    return any(
        health.status == "stopping" and instance_base(name) in using
        for name, health in (node.health or {}).items()
    )


def dataset_in_use(
    node_uuid: str,
    dataset_id: str,
    configuration: Deployment,
    cluster_state: DeploymentState,
    now: float,
) -> bool:
    """
    Whether something on the node still uses a dataset: a lease held by the
    node, or an application the node's container agent reports running
    with the dataset as a volume.  While the node's applications are
    unknown (its container agent has not reported since the control
    service started), a dataset that any configured application mounts
    counts as in use: its container may well still be running here.
    """
    lease = configuration.leases.expire(now).get(dataset_id)
    if lease is not None and lease.node_uuid == node_uuid:
        return True
    reported = cluster_state.get_node(node_uuid).applications
    if reported is None:
        return any(
            volume.dataset_id == dataset_id
            for application, _ in configuration.all_applications()
            for volume in application.volumes
        )
    return any(
        volume.dataset_id == dataset_id
        for application in reported.values()
        for volume in application.volumes
    )


def dataset_view(
    node_uuid: str, configuration: Deployment, cluster_state: DeploymentState
) -> object:
    """
    What a node's dataset agent depends on of a push (its loop's ``view``):
    the configuration; the other nodes' reports but for what only the
    container agents act on (their applications and health, ports and
    image pulls); and of this node's report, which applications run here
    (a dataset they mount is in use) and which of their instances are
    stopping (`application_stopping`) — not its own datasets, which it
    knows better from its discovery.  A push that changes none of it
    (another node's instance found healthy, the echo of its own report)
    starts no pass of the dataset agent, whose discovery asks the storage;
    the next pass, poked or timed, converges to it.
    """
    nodes: list[tuple[str, object, object]] = []
    for uuid_, state in sorted(cluster_state.nodes.items()):
        if uuid_ == node_uuid:
            stopping = sorted(
                name for name, health in (state.health or {}).items() if health.status == "stopping"
            )
            nodes.append((uuid_, state.applications, tuple(stopping)))
        else:
            others = state.set(
                applications=None, health=None, busy_ports=None, port_conflicts=None, image_pulls=None
            )
            nodes.append((uuid_, others, None))
    return (configuration, tuple(nodes))


def _exposed_at(dataset_id: str, path: str | None) -> Callable[[NodeState], NodeState | None]:
    """
    The change of a node's last state sent that says the dataset is exposed
    at ``path`` here (``None``: not exposed), for a report sent at once
    (`ConvergenceLoop.report_change`); nothing to say while the dataset
    was not in it.
    """

    def change(last: NodeState) -> NodeState | None:
        if last.datasets is None or dataset_id not in last.datasets:
            return None
        copy = last.datasets[dataset_id].set(path=path)
        return last.set(datasets=last.datasets.set(dataset_id, copy))

    return change


@attr.s(eq=False)
class DatasetAgent(ControlledAgent):
    """
    A node's dataset agent: its parts, and the policies that join them.

    :ivar reactor: The reactor everything runs on.
    :ivar node_uuid: This node's UUID (from its certificate).
    :ivar address: This node's address (others push datasets to it).
    :ivar backend: The node's volume backend.
    :ivar roles: The durable record of dataset roles.
    :ivar tls: The node's certificate, key and cluster CA.
    :ivar control: The control service instances' agent addresses.
    :ivar transfer_port: The port every node's transfer receiver listens on.
    :ivar fence_after: Seconds without a word from the control service
        before the agent fences itself.
    """

    reactor: IReactorTime = attr.ib()
    node_uuid: str = attr.ib()
    address: str = attr.ib()
    backend: IVolumeBackend = attr.ib()
    roles: IDatasetRoles = attr.ib()
    tls: TLSFiles = attr.ib()
    control: tuple[ControlAddress, ...] = attr.ib(converter=control_addresses_tuple)
    transfer_port: int = attr.ib()
    fence_after: float = attr.ib(default=DEFAULT_FENCE_AFTER)
    kind = "dataset"

    fence: Fence = attr.ib(init=False)
    mover: DatasetMover = attr.ib(init=False)
    deployer: DatasetDeployer = attr.ib(init=False)
    loop: ConvergenceLoop[DatasetLocalState] = attr.ib(init=False)
    receiver: TransferReceiver = attr.ib(init=False)
    client: AgentAMPClient = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        """Build the parts; nothing runs until `service` is started."""
        self.fence = self._make_fence()
        self.mover = DatasetMover(
            self.backend,
            self.roles,
            self.send,
            in_use=self.in_use,
            on_handoff=self.handoff,
            stopping=self.stopping,
            clock=self.reactor,
            still_wanted=self.still_wanted,
        )
        self.receiver = TransferReceiver(
            self.backend,
            on_stored=self.stored,
            authorize=self.authorize,
            refuse=self.refuse,
            replace=self.replace,
        )
        self.deployer = DatasetDeployer(
            self.node_uuid,
            self.address,
            self.backend,
            self.roles,
            self.mover,
            receiving=lambda: set(self.receiver.in_flight),
            fenced=lambda: self.fence.is_up,
        )
        self.loop = ConvergenceLoop(
            self.reactor,
            self.deployer,
            self.report,
            progress=ConvergenceProgress(self.reactor),
            view=partial(dataset_view, self.node_uuid),
        )
        self.client = self._make_client(
            snapshots=SnapshotOperations(self.backend, self.roles, self.poke_soon),
            transfers=self.transfers,
        )

    # -- wiring -------------------------------------------------------------

    def service(self) -> MultiService:
        """
        The agent as a service: the fence, the transfer port, the control
        connection, the loop.
        """
        return self._services(
            transfer_service(
                self.reactor,
                self.receiver,
                self.transfer_port,
                self.tls,
                interface=self.address,
            )
        )

    def send(
        self,
        dataset_id: str,
        snapshot: str,
        base: str | None,
        host: str,
        final: bool,
        epoch: int = 0,
    ) -> Deferred[int]:
        """Push one stream to another node's agent; fires with the bytes sent."""
        sent = push(
            self.reactor,
            self.backend,
            dataset_id,
            snapshot,
            base,
            host,
            self.transfer_port,
            self.tls,
            final=final,
            epoch=epoch,
        )
        return sent.addCallback(lambda result: result.bytes_sent)

    def transfers(self) -> list[dict[str, Any]]:
        """The transfers this node is receiving now, for the control service."""
        return [
            {
                "dataset_id": p.dataset_id,
                "snapshot": p.snapshot,
                "base": p.base,
                "bytes": p.bytes_transferred,
                "size": p.size,
            }
            for p in list(self.receiver.in_flight.values())
        ]

    # -- policies -----------------------------------------------------------

    def in_use(self, dataset_id: str) -> bool:
        """
        Whether something on this node still uses the dataset; while the
        configuration or cluster state is not known yet, everything is.
        """
        configuration, cluster_state = self.loop.configuration, self.loop.cluster_state
        if configuration is None or cluster_state is None:
            return True
        return dataset_in_use(
            self.node_uuid,
            dataset_id,
            configuration,
            cluster_state,
            self.reactor.seconds(),
        )

    def still_wanted(self, change: PushDataset) -> bool:
        """
        Whether the configuration held now still makes the change's
        destination the dataset's primary, at the change's epoch.
        """
        configuration = self.loop.configuration
        if configuration is None:
            return False
        try:
            dataset, primary = configuration.get_dataset(change.dataset_id)
        except KeyError:
            return False
        return primary == change.destination and int(dataset.epoch) == change.epoch

    def stopping(self, dataset_id: str) -> bool:
        """Whether an application using the dataset here is stopping now."""
        cluster_state = self.loop.cluster_state
        if cluster_state is None:
            return False
        return application_stopping(self.node_uuid, dataset_id, cluster_state)

    def handoff(self, dataset_id: str) -> Deferred[Any] | None:
        """Tell the cluster at once that this node no longer exposes the dataset."""
        return self.loop.report_change(_exposed_at(dataset_id, None))

    def _configured_epoch(self, dataset_id: str) -> int | None:
        """The dataset's epoch in the configuration held, if it is known."""
        configuration = self.loop.configuration
        if configuration is None:
            return None
        try:
            dataset, _ = configuration.get_dataset(dataset_id)
        except KeyError:
            return None
        return int(dataset.epoch)

    def authorize(self, header: TransferHeader, peer: str) -> str | None:
        """
        Refuse (and log) a stream the configuration does not send here from
        ``peer``, the pushing node's UUID from its certificate; see
        `transfer_unauthorized`.
        """
        reason = transfer_unauthorized(
            self.node_uuid,
            peer,
            header,
            self.loop.configuration,
            self.loop.cluster_state,
        )
        if reason is not None:
            TRANSFER_UNAUTHORIZED.log(
                dataset_id=header.dataset_id,
                peer=peer,
                final=header.final,
                reason=reason,
            )
        return reason

    def refuse(self, header: TransferHeader) -> str | None:
        """
        Refuse a push that would overwrite data that must stay: into a
        dataset this node exposes (what its application writes: a sender
        that missed that its move is over), into a fenced copy (this
        node's primary copy while it is cut off from the control service),
        into a diverged copy (kept after a failover, never overwritten
        automatically, until it rejoined as a replica), or from a
        primary of an older epoch than the local copy's or the
        configuration's (a failover superseded it).
        """
        dataset_id = header.dataset_id
        role = self.roles.get(dataset_id)
        if role == PRIMARY:
            return f"dataset {dataset_id} is exposed on this node: not overwriting it"
        if role == FENCED:
            return f"dataset {dataset_id} is fenced on this node: its copy is kept as it is"
        if role == DIVERGED:
            return (
                f"dataset {dataset_id} diverged on this node: its copy is kept as it is"
            )
        held = self.roles.epoch(dataset_id)
        if header.epoch < held:
            return (
                f"dataset {dataset_id} is held here at epoch {held}: a stream of epoch "
                f"{header.epoch} comes from a superseded primary"
            )
        configured = self._configured_epoch(dataset_id)
        if configured is not None and header.epoch < configured:
            return (
                f"dataset {dataset_id} is at epoch {configured}: a stream of epoch "
                f"{header.epoch} comes from a superseded primary"
            )
        return None

    def replace(self, header: TransferHeader) -> bool:
        """
        Whether a full stream may replace the local copy: only a replica's
        (one that shares no snapshot with its primary any more, e.g. after
        the primary moved to a node without a replica, can only be brought
        up to date so); never an exposed or diverged copy, which `refuse`
        turns away anyway.
        """
        return self.roles.get(header.dataset_id) == REPLICA

    def stored(self, header: TransferHeader) -> Deferred[None] | None:
        """
        A stream arrived, durably recorded before the sender is told (so
        the sender can let go): a final one makes this node the primary at
        the stream's epoch; any other leaves a replica at the stream's
        epoch.  Either way the new snapshot is reported without waiting for
        a poll (the sender's next round starts from it).  A final one is
        also reported exposed at once, so that the node's container agent
        starts its applications on it without waiting for a discovery
        (the sender is not kept waiting for that report).
        """
        if header.final:
            # Writable before it is recorded as exposed (a received copy is
            # read-only until then).
            writable = self.backend.set_read_only(header.dataset_id, False)

            def exposed(info: DatasetInfo) -> None:
                self.roles.set(header.dataset_id, PRIMARY, epoch=header.epoch)
                self.poke_soon()
                self.report_at_once(_exposed_at(header.dataset_id, info.path))

            return writable.addCallback(exposed)
        if self.roles.get(header.dataset_id) != PRIMARY:
            self.roles.set(header.dataset_id, REPLICA, epoch=header.epoch)
        self.poke_soon()
        return None


__all__ = [
    "TRANSFER_UNAUTHORIZED",
    "DatasetAgent",
    "application_stopping",
    "dataset_in_use",
    "dataset_view",
    "transfer_unauthorized",
]
