"""
The wire between agents and the control service: AMP over mutually
authenticated TLS.

Conversation on one connection (the agent connects):

1. The agent sends `VersionCommand` (its protocol version and kind,
   ``"dataset"`` or ``"container"``).  The control service identifies the
   node from the TLS certificate; an incompatible version, an unknown kind or
   a certificate that is not a node's is refused with a logged reason and the
   connection is closed.
2. The control service pushes `ClusterStatusCommand` right away with the
   whole configuration and cluster state, and after that whenever either
   changes, as a diff against the document the agent last acknowledged.  At
   most one push per connection is in flight; changes made meanwhile are
   coalesced into the next one.  There is no batching delay.
3. The agent sends `NodeStateCommand` whenever it has discovered its state.
   The node is the certificate's: a report for another node is refused.
4. Both sides send `NoOpCommand` every `KEEPALIVE_INTERVAL` seconds; a
   keep-alive still unanswered when the next is due drops the connection.
   Every command received from an agent counts as a sign of life of its node
   for the cluster state's expiry.

Every command carries the sender's eliot task (``eliot_context``), and the
receiver continues it, so one push or report reads as one tree across both
processes.  Payloads that may exceed AMP's 64 KiB value limit travel as
`ChunkedBytes`.

The agent side lives in `flocker.control._protocol_agent`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import attrs
from eliot import Action, start_action, write_failure
from eliot.twisted import DeferredContext
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import (
    IHandshakeListener,
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.task import LoopingCall
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from flocker.ca import PeerIdentity, UnknownPeer, peer_identity
from flocker.common import no_delay

from ._clusterstate import ClusterStateService
from ._persistence import ConfigurationService
from ._protocol_diff import (
    decode_diff,
    diff_documents,
    encode_diff,
    join_chunks,
    split_chunks,
)
from ._protocol_document import DocumentEncoder
from ._protocol_logging import (
    AGENT_CONNECTED,
    AGENT_DISCONNECTED,
    AGENT_REFUSED,
    IDENTITY_REFUSED,
    KEEPALIVE_TIMEOUT,
    PING,
    PUSH_CLUSTER_STATUS,
    REPORT_STATE,
)
from ._serialization import (
    SerializationError,
    deserialize_node_state,
)
from ._state import DeploymentState, NodeState

__all__ = [
    "AgentUnavailable",
    "SnapshotCommand",
    "TransfersCommand",
    "AGENT_KINDS",
    "KEEPALIVE_INTERVAL",
    "PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "FENCE_MARGIN",
    "UnsafeFenceAfter",
    "BadNodeState",
    "ChunkedBytes",
    "ClusterStatusCommand",
    "ControlAMP",
    "ControlAMPService",
    "HandshakeRequired",
    "IncompatibleVersion",
    "NoOpCommand",
    "NodeStateCommand",
    "OutOfSync",
    "VersionCommand",
    "WrongNode",
    "decode_diff",
    "encode_diff",
]

#: The agent protocol version this Flocker speaks.  Version 2 pushes
#: configuration format 2 (clones, rollbacks, environments) and adds the
#: snapshot and transfer commands; version 3 pushes configuration format 3
#: (standing replicas, replication, epochs) and reports carry each copy's
#: role and epoch; version 4 adds each node's ``busy_ports`` and
#: ``port_conflicts`` to reports and to the state pushed (an agent of
#: version 3 would refuse those keys in what it is pushed).  An agent
#: speaking an older version is refused with a clear message rather than
#: failing to decode what it is pushed.  Version 5 pushes datasets'
#: ``failover_snapshot``, and reports carry each copy's ``set_aside``
#: snapshots and the ``fenced`` role.  Version 6 adds each node's
#: ``last_converged``, ``failing_changes`` and ``pool`` to reports and to
#: the state pushed (an agent of version 5 would refuse those keys).
#: Version 7 adds each node's ``deletions_seen`` (the deleted datasets its
#: dataset agent's last pass acted on) to reports and to the state pushed.
#: Version 8 adds each node's ``image_pulls`` (the images its container
#: agent is getting, or failed to get) likewise.  Version 9 pushes
#: configuration format 5 (applications' ``health`` checks and update
#: history: ``revision``, ``previous``, ``updating``, ``update_failed``)
#: and adds each node's ``health`` (its container agent's probes of the
#: applications configured there) to reports and to the state pushed.
#: Version 10 pushes configuration format 6 (applications' ``replicas``),
#: and each reported instance's health carries the ports its node
#: publishes it on (where the routers forward its external ports).
PROTOCOL_VERSION = 10

#: The versions the control service accepts from agents.
SUPPORTED_PROTOCOL_VERSIONS = frozenset({PROTOCOL_VERSION})

#: The kinds of agent that connect.
AGENT_KINDS = frozenset({"dataset", "container"})

#: Seconds between keep-alives (well under the cluster state's expiry).
KEEPALIVE_INTERVAL = 15.0


# --------------------------------------------------------------------------
# Arguments and errors


class ChunkedBytes(amp.Argument):
    """
    A byte string of any length, sent as several AMP values.

    An argument ``name`` travels as ``name`` (the number of chunks, decimal)
    and ``name.0``, ``name.1``, … each at most 65,535 bytes.
    """

    def toBox(  # noqa: N802
        self,
        name: bytes,
        strings: dict[bytes, bytes],
        objects: dict[str, Any],
        proto: Any,
    ) -> None:
        """Write the chunks of ``objects[name]`` into ``strings``."""
        value = objects[amp._wireNameToPythonIdentifier(name)]
        if not isinstance(value, bytes):
            raise TypeError(f"{name!r} must be bytes, not {type(value).__name__}")
        chunks = split_chunks(value)
        strings[name] = b"%d" % (len(chunks),)
        for index, chunk in enumerate(chunks):
            strings[b"%s.%d" % (name, index)] = chunk

    def fromBox(  # noqa: N802
        self,
        name: bytes,
        strings: dict[bytes, bytes],
        objects: dict[str, Any],
        proto: Any,
    ) -> None:
        """Read the chunks of ``name`` from ``strings`` into ``objects``."""
        count_text = strings.get(name)
        if count_text is None or not count_text.isdigit():
            raise amp.MalformedAmpBox(f"{name!r} has no chunk count")
        chunks = []
        for index in range(int(count_text)):
            chunk = strings.get(b"%s.%d" % (name, index))
            if chunk is None:
                raise amp.MalformedAmpBox(f"{name!r} is missing chunk {index}")
            chunks.append(chunk)
        objects[amp._wireNameToPythonIdentifier(name)] = join_chunks(chunks)


class IncompatibleVersion(Exception):
    """The agent speaks a protocol version the control service does not."""


class UnknownAgentKind(Exception):
    """The agent says it is neither a dataset nor a container agent."""


class UnsafeFenceAfter(Exception):
    """
    The agent fences itself too late for this control service's automatic
    failover: its ``fence-after`` plus `FENCE_MARGIN` is not below
    ``failover_after``.
    """


#: Seconds by which ``failover_after`` must exceed the agents' ``fence_after``.
FENCE_MARGIN = 5.0


class NotANode(Exception):
    """The peer's certificate is not a node's; only nodes run agents."""


class HandshakeRequired(Exception):
    """A command came before (or without) a successful `VersionCommand`."""


class WrongNode(Exception):
    """A state report names another node than the sender's certificate."""


class BadNodeState(Exception):
    """A state report is not a valid serialized `NodeState`."""


class OutOfSync(Exception):
    """A pushed diff is against a document the agent does not have."""


_ELIOT = (b"eliot_context", amp.Unicode())


# --------------------------------------------------------------------------
# Commands


class VersionCommand(amp.Command):
    """
    Sent by an agent as the first command on every connection.

    Carries the agent's protocol version and kind; the control service answers
    with its own version, or refuses (and closes the connection) if it cannot
    talk to this agent.
    """

    arguments = [
        (b"protocol_version", amp.Integer()),
        (b"agent_kind", amp.Unicode()),
        # The agent's fence-after, in seconds (optional: a test client may
        # leave it out, and then it is not checked).
        (b"fence_after", amp.Float(optional=True)),
        _ELIOT,
    ]
    response = [(b"protocol_version", amp.Integer())]
    fatalErrors = {  # noqa: RUF012
        IncompatibleVersion: b"INCOMPATIBLE_VERSION",
        UnknownAgentKind: b"UNKNOWN_AGENT_KIND",
        NotANode: b"NOT_A_NODE",
        UnsafeFenceAfter: b"UNSAFE_FENCE_AFTER",
    }


class NodeStateCommand(amp.Command):
    """
    Sent by an agent whenever it has discovered its node's state.

    ``state`` is a serialized `NodeState` (unknown halves ``null``); it must be
    for the node named by the agent's certificate.
    """

    arguments = [(b"state", ChunkedBytes()), _ELIOT]
    response = []  # noqa: RUF012
    errors = {  # noqa: RUF012
        HandshakeRequired: b"HANDSHAKE_REQUIRED",
        WrongNode: b"WRONG_NODE",
        BadNodeState: b"BAD_NODE_STATE",
    }


class ClusterStatusCommand(amp.Command):
    """
    Sent by the control service on connect and whenever the configuration or
    the cluster state changes.

    ``diff`` (see `flocker.control._protocol_diff`) turns the document of
    version ``base`` -- the one the agent last acknowledged, or nothing when
    ``base`` is 0 -- into the document of version ``version``:
    ``{"configuration": <deployment JSON>, "state": <deployment state JSON>}``.
    Answering acknowledges ``version``.
    """

    arguments = [
        (b"base", amp.Integer()),
        (b"version", amp.Integer()),
        (b"diff", ChunkedBytes()),
        _ELIOT,
    ]
    response = []  # noqa: RUF012
    errors = {OutOfSync: b"OUT_OF_SYNC"}  # noqa: RUF012


class NoOpCommand(amp.Command):
    """A keep-alive, sent by either side every `KEEPALIVE_INTERVAL` seconds."""

    arguments = [_ELIOT]
    response = []  # noqa: RUF012


class SnapshotCommand(amp.Command):
    """
    Sent by the control service (for the REST API) to the dataset agent of
    a dataset's primary node: ``operation`` is ``list``, ``take`` or
    ``destroy`` a user snapshot ``name`` of ``dataset_id``, now.

    ``result`` is JSON: ``{"snapshots": [{"name", "created"}…]}``,
    ``{"snapshot": {"name", "created"}}``, or ``{"error": {"code",
    "description"}}`` with ``code`` one of ``not_here``, ``unknown_snapshot``,
    ``snapshot_exists``, ``has_clones``, ``bad_request``.
    """

    arguments = [
        (b"operation", amp.Unicode()),
        (b"dataset_id", amp.Unicode()),
        (b"name", amp.Unicode()),
        _ELIOT,
    ]
    response = [(b"result", amp.Unicode())]


class TransfersCommand(amp.Command):
    """
    Sent by the control service (for the REST API) to every dataset agent:
    the transfers it is receiving now.  ``result`` is JSON: a list of
    ``{"dataset_id", "snapshot", "base", "bytes", "size"}`` (``size`` is
    ``null`` when the sender did not know it).
    """

    arguments = [_ELIOT]
    response = [(b"result", amp.Unicode())]


class AgentUnavailable(Exception):
    """No dataset agent of that node is connected to the control service."""


# --------------------------------------------------------------------------
# Shared pieces


@attrs.define(eq=False)
class KeepAlive:
    """
    Send a keep-alive every ``interval`` seconds; give up if one goes unanswered.

    :ivar clock: schedules the keep-alives.
    :ivar send: sends one keep-alive, returning a Deferred of the answer.
    :ivar timed_out: called (once) when a keep-alive is still unanswered when
        the next is due.
    """

    clock: IReactorTime
    send: Callable[[], Deferred[Any]]
    timed_out: Callable[[], None]
    interval: float = KEEPALIVE_INTERVAL
    _outstanding: bool = attrs.field(default=False, init=False)
    _loop: LoopingCall | None = attrs.field(default=None, init=False)

    def start(self) -> None:
        """Start sending keep-alives."""
        if self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        """Stop sending keep-alives."""
        if self._loop is not None:
            self._loop.stop()
            self._loop = None

    def _tick(self) -> None:
        if self._outstanding:
            self.stop()
            self.timed_out()
            return
        self._outstanding = True
        self.send().addBoth(self._answered)

    def _answered(self, result: Any) -> None:
        self._outstanding = False


def send_with_context(
    protocol: amp.AMP, action: Action, command: type[amp.Command], **arguments: Any
) -> Deferred[Any]:
    """
    Send ``command`` inside ``action`` (already started), carrying its task.

    The action finishes when the answer arrives (failed if the command fails).
    """
    with action.context():
        result = DeferredContext(
            protocol.callRemote(
                command,
                eliot_context=action.serialize_task_id().decode("ascii"),
                **arguments,
            )
        )
        finished: Deferred[Any] = result.addActionFinish()
    return finished


def continue_task(eliot_context: str) -> Action:
    """
    Continue the sender's eliot task on this side.

    A context that cannot be parsed (an old or foreign sender) starts a task
    of its own rather than failing the command.
    """
    try:
        return Action.continue_task(task_id=eliot_context)
    except Exception:
        return start_action(action_type="flocker:control:amp:untraced_command")


def abort(transport: Any) -> None:
    """Close a connection at once, without waiting for buffered data."""
    cast(ITCPTransport, transport).abortConnection()


def ping(protocol: amp.AMP) -> Deferred[Any]:
    """Send one `NoOpCommand` in its own eliot action."""
    return send_with_context(protocol, PING(), NoOpCommand)


def is_connection_gone(failure: Failure) -> bool:
    """Whether a command failed only because the connection closed."""
    return failure.check(ConnectionClosed, amp.ProtocolSwitched) is not None


# --------------------------------------------------------------------------
# The control service's side


class ControlLocator(amp.CommandLocator):
    """The control service's responders for one agent connection."""

    def __init__(self, connection: ControlAMP) -> None:
        """Answer for ``connection``, using its service."""
        self.connection = connection

    @VersionCommand.responder
    def version(
        self,
        protocol_version: int,
        agent_kind: str,
        eliot_context: str,
        fence_after: float | None = None,
    ) -> dict[str, int]:
        """Accept a compatible agent and start pushing it the cluster's status."""
        with continue_task(eliot_context):
            return self.connection.handshake(protocol_version, agent_kind, fence_after)

    @NodeStateCommand.responder
    def node_state(self, state: bytes, eliot_context: str) -> dict[str, Any]:
        """Merge the agent's report into the cluster state."""
        with continue_task(eliot_context):
            self.connection.report(state)
        return {}

    @NoOpCommand.responder
    def noop(self, eliot_context: str) -> dict[str, Any]:
        """Note that the agent's node is alive."""
        with continue_task(eliot_context):
            self.connection.alive()
        return {}


@implementer(IHandshakeListener)
class ControlAMP(amp.AMP):
    """
    The control service's end of one agent connection.

    The node's identity comes from the TLS certificate (``identify`` is
    `flocker.ca.peer_identity` on real connections), read once the TLS
    handshake completed or the first bytes arrived.
    """

    def __init__(
        self,
        service: ControlAMPService,
        identify: Callable[[Any], PeerIdentity],
    ) -> None:
        """Talk for ``service``; learn the peer with ``identify(transport)``."""
        super().__init__(locator=ControlLocator(self))  # type: ignore[no-untyped-call]  # Twisted's
        self.service = service
        self._identify = identify
        self.identity: PeerIdentity | None = None
        self.agent_kind: str | None = None
        #: The document version (and document) the agent last acknowledged.
        self.acknowledged: tuple[int, Any] = (0, None)
        #: The push awaiting the agent's answer, if any.
        self._in_flight: Deferred[Any] | None = None
        #: A version whose full document the agent refused (not pushed again).
        self._refused_version = 0
        self._refused = False
        #: The last report received and what it decoded to.
        self._last_report: tuple[bytes, NodeState] | None = None
        self._keepalive = KeepAlive(
            service.reactor,
            lambda: ping(self),
            self._keepalive_timed_out,
            service.keepalive_interval,
        )

    @property
    def node_uuid(self) -> str | None:
        """The node UUID from the peer's certificate, once known."""
        if self.identity is None or self.identity.node_uuid is None:
            return None
        return str(self.identity.node_uuid)

    @property
    def handshaken(self) -> bool:
        """Whether the agent passed the version handshake."""
        return self.agent_kind is not None

    # -- identity ------------------------------------------------------------

    def handshakeCompleted(self) -> None:  # noqa: N802
        """Identify the peer as soon as TLS has authenticated it."""
        self._learn_identity()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Identify the peer (if not yet), then handle the AMP bytes."""
        if not self._learn_identity():
            return
        super().dataReceived(data)  # type: ignore[no-untyped-call]  # Twisted's

    def _learn_identity(self) -> bool:
        """Read the certificate's identity once; refuse non-nodes. Whether to go on."""
        if self._refused:
            return False
        if self.identity is not None:
            return True
        try:
            identity = self._identify(self.transport)
        except UnknownPeer as e:
            self._refuse(None, str(e))
            return False
        if identity.kind != "node":
            self._refuse(None, f"the peer is a {identity.kind}, not a node")
            return False
        self.identity = identity
        return True

    def _refuse(self, node_uuid: str | None, reason: str) -> None:
        self._refused = True
        AGENT_REFUSED.log(node_uuid=node_uuid, reason=reason)
        if self.transport is not None:
            self.transport.loseConnection()

    # -- responders' work ----------------------------------------------------

    def handshake(
        self, protocol_version: int, agent_kind: str, fence_after: float | None = None
    ) -> dict[str, int]:
        """
        Check the agent's version, kind and fence-after (one that fences
        too late for this service's ``failover_after`` is refused: a
        primary cut off from the control service could still be serving
        when a replica is promoted); register it for pushes.
        """
        if self.identity is None or self.identity.kind != "node":
            AGENT_REFUSED.log(node_uuid=None, reason="the peer is not a node")
            raise NotANode("only nodes' agents may connect")
        if protocol_version not in SUPPORTED_PROTOCOL_VERSIONS:
            reason = (
                f"incompatible agent protocol version {protocol_version} "
                f"(this control service speaks {sorted(SUPPORTED_PROTOCOL_VERSIONS)})"
            )
            AGENT_REFUSED.log(node_uuid=self.node_uuid, reason=reason)
            raise IncompatibleVersion(reason)
        if agent_kind not in AGENT_KINDS:
            reason = (
                f"unknown agent kind {agent_kind!r} (not one of {sorted(AGENT_KINDS)})"
            )
            AGENT_REFUSED.log(node_uuid=self.node_uuid, reason=reason)
            raise UnknownAgentKind(reason)
        failover_after = self.service.failover_after
        if (
            fence_after is not None
            and failover_after is not None
            and not failover_after > fence_after + FENCE_MARGIN
        ):
            reason = (
                f"the agent's fence-after ({fence_after:g} s) plus {FENCE_MARGIN:g} s is "
                f"not below this control service's failover_after ({failover_after:g} s): "
                "a primary cut off from the control service could still serve when a "
                "replica is promoted; lower fence-after in agent.yml or raise "
                "flocker-control --failover-after"
            )
            AGENT_REFUSED.log(node_uuid=self.node_uuid, reason=reason)
            raise UnsafeFenceAfter(reason)
        if self.handshaken:
            return {"protocol_version": PROTOCOL_VERSION}
        self.agent_kind = agent_kind
        AGENT_CONNECTED.log(
            node_uuid=self.node_uuid,
            agent_kind=agent_kind,
            protocol_version=protocol_version,
        )
        self.alive()
        self._keepalive.start()
        # The first push goes out after this answer, so the agent knows it
        # is connected by the time its callback first runs.
        self.service.reactor.callLater(0, self.service.agent_ready, self)
        return {"protocol_version": PROTOCOL_VERSION}

    def report(self, data: bytes) -> None:
        """Merge a state report made by this connection's node."""
        if not self.handshaken:
            raise HandshakeRequired("send VersionCommand first")
        with REPORT_STATE(node_uuid=self.node_uuid, size=len(data)):
            state = self._decode_report(data)
            if state.uuid != self.node_uuid:
                IDENTITY_REFUSED.log(node_uuid=self.node_uuid, claimed_uuid=state.uuid)
                raise WrongNode(
                    f"node {self.node_uuid} cannot report state for node {state.uuid}"
                )
            self.service.cluster_state_service.update_node_state(state, self.agent_kind)
            self.alive()

    def _decode_report(self, data: bytes) -> NodeState:
        """
        The state a report holds.  Agents send the same report again (after
        a reconnection, to refresh their last convergence time, or, in
        simulations, every second); a report equal to the connection's
        previous one is not decoded again.
        """
        if self._last_report is not None and self._last_report[0] == data:
            return self._last_report[1]
        try:
            state = deserialize_node_state(data)
        except SerializationError as e:
            raise BadNodeState(str(e)) from None
        self._last_report = (data, state)
        return state

    def alive(self) -> None:
        """Note that this connection's agent is alive (for expiry and failover)."""
        if self.node_uuid is not None:
            self.service.cluster_state_service.touch(self.node_uuid, self.agent_kind)

    # -- pushes --------------------------------------------------------------

    def changed(self) -> None:
        """
        The document changed: push now, unless a push is in flight.

        When the push in flight is answered, whatever changed meanwhile goes
        out in one push (the acknowledged version is compared with the
        current one), so there is never more than one push in flight and no
        batching delay.
        """
        if self.handshaken and self._in_flight is None:
            self._push()

    def _push(self) -> None:
        version, document = self.service.current_document()
        base, _ = self.acknowledged
        if base == version or self._refused_version == version:
            return
        data = self.service.encoded_diff(self.acknowledged)
        action = PUSH_CLUSTER_STATUS(
            node_uuid=self.node_uuid, base=base, version=version, size=len(data)
        )
        self._in_flight = send_with_context(
            self, action, ClusterStatusCommand, base=base, version=version, diff=data
        )
        self._in_flight.addBoth(self._pushed, base, version, document)

    def _pushed(self, result: Any, base: int, version: int, document: Any) -> None:
        self._in_flight = None
        if isinstance(result, Failure):
            if is_connection_gone(result):
                return
            # The agent could not apply it: start again from a full document,
            # but do not loop on an agent that refuses even that; wait for
            # the next change.
            self.acknowledged = (0, None)
            if base == 0:
                self._refused_version = version
        else:
            self.acknowledged = (version, document)
        self._push()

    # -- life cycle ----------------------------------------------------------

    def _keepalive_timed_out(self) -> None:
        KEEPALIVE_TIMEOUT.log(node_uuid=self.node_uuid)
        if self.transport is not None:
            abort(self.transport)

    def connectionMade(self) -> None:  # noqa: N802
        """Track the connection."""
        super().connectionMade()  # type: ignore[no-untyped-call]  # Twisted's
        no_delay(self.transport)  # reports and pushes go out at once
        self.service.connection_made(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """Stop keep-alives and forget the connection (the node's state stays)."""
        self._keepalive.stop()
        self.service.connection_lost(self)
        if self.handshaken or self.identity is not None:
            AGENT_DISCONNECTED.log(
                node_uuid=self.node_uuid, reason=reason.getErrorMessage()
            )
        super().connectionLost(reason)  # type: ignore[no-untyped-call]  # Twisted's


class _ControlFactory(Factory):
    """Makes a `ControlAMP` per agent connection."""

    def __init__(self, service: ControlAMPService) -> None:
        self.service = service

    def buildProtocol(self, addr: Any) -> ControlAMP:  # noqa: N802
        """A protocol for one agent."""
        return self.service.build_protocol()


@attrs.define(slots=False, eq=False)
class ControlAMPService(Service):
    """
    Listens for agents, pushes them the cluster's status, merges their reports.

    :ivar reactor: the clock for keep-alives and expiry.
    :ivar configuration_service: a loaded `ConfigurationService`.
    :ivar cluster_state_service: the `ClusterStateService` reports go to; its
        expiry of silent nodes runs while this service runs.
    :ivar endpoint: where to listen (a TLS endpoint made with
        `flocker.ca.server_context_factory`), or ``None`` to not listen (tests
        connect protocols from `build_protocol` themselves).
    :ivar identify: reads the peer's identity from a transport.
    :ivar keepalive_interval: seconds between keep-alives to each agent.
    """

    reactor: IReactorTime
    configuration_service: ConfigurationService
    cluster_state_service: ClusterStateService
    endpoint: IStreamServerEndpoint | None = None
    identify: Callable[[Any], PeerIdentity] = peer_identity
    keepalive_interval: float = KEEPALIVE_INTERVAL
    #: Automatic failover's delay: agents whose fence-after plus
    #: `FENCE_MARGIN` is not below it are refused (``None``: not checked).
    failover_after: float | None = None
    #: The listening port once started (with an endpoint).
    port: IListeningPort | None = attrs.field(default=None, init=False)
    _connections: set[ControlAMP] = attrs.field(factory=set, init=False)
    _version: int = attrs.field(default=1, init=False)
    _document: Any = attrs.field(default=None, init=False)
    _encoder: DocumentEncoder = attrs.field(factory=DocumentEncoder, init=False)
    _diffs: dict[int, bytes] = attrs.field(factory=dict, init=False)
    _unsubscribe: list[Callable[[], None]] = attrs.field(factory=list, init=False)
    _listening: Deferred[Any] | None = attrs.field(default=None, init=False)

    @property
    def connections(self) -> frozenset[ControlAMP]:
        """The open agent connections."""
        return frozenset(self._connections)

    def snapshot_operation(
        self, node_uuid: str, operation: str, dataset_id: str, name: str = ""
    ) -> Deferred[dict[str, Any]]:
        """
        Ask ``node_uuid``'s dataset agent for a `SnapshotCommand`.

        :return: A Deferred firing with the decoded ``result``, or failing
            with `AgentUnavailable` when that agent is not connected.
        """
        for connection in self._connections:
            if connection.node_uuid == node_uuid and connection.agent_kind == "dataset":
                action = start_action(
                    action_type="flocker:control:amp:snapshot",
                    node_uuid=node_uuid,
                    operation=operation,
                    dataset_id=dataset_id,
                    name=name,
                )
                sent = send_with_context(
                    connection,
                    action,
                    SnapshotCommand,
                    operation=operation,
                    dataset_id=dataset_id,
                    name=name,
                )
                return sent.addCallback(lambda answer: json.loads(answer["result"]))
        return fail(AgentUnavailable(node_uuid))

    def build_protocol(self) -> ControlAMP:
        """A protocol for one agent connection."""
        return ControlAMP(self, self.identify)

    def startService(self) -> None:  # noqa: N802
        """Subscribe to changes, expire silent nodes, listen for agents."""
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's
        # Fails loudly if the configuration was not loaded first.
        self.configuration_service.deployment  # noqa: B018
        self._unsubscribe = [
            self.configuration_service.subscribe(lambda g, d: self._changed()),
            self.cluster_state_service.subscribe(self._state_changed),
        ]
        self.cluster_state_service.start_expiring()
        if self.endpoint is not None:
            self._listening = self.endpoint.listen(_ControlFactory(self))
            self._listening.addCallback(self._listened)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        return port

    def listening(self) -> Deferred[IListeningPort]:
        """A Deferred firing with the listening port once it listens."""
        if self._listening is None:
            raise RuntimeError("not started, or no endpoint to listen on")
        if self.port is not None:
            return succeed(self.port)
        result: Deferred[IListeningPort] = Deferred()

        def relay(outcome: Any) -> Any:
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)
            return outcome

        self._listening.addBoth(relay)
        return result

    def stopService(self) -> Deferred[None]:  # noqa: N802
        """Stop listening, drop agent connections, stop expiring."""
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self.cluster_state_service.stop_expiring()
        for connection in list(self._connections):
            if connection.transport is not None:
                abort(connection.transport)

        async def stop() -> None:
            if self._listening is not None:
                try:
                    port = await self._listening
                except Exception:
                    write_failure(Failure())
                else:
                    await port.stopListening()
                self._listening = None
                self.port = None

        return Deferred.fromCoroutine(stop())

    # -- for the connections -------------------------------------------------

    def connection_made(self, connection: ControlAMP) -> None:
        """Track a new connection."""
        self._connections.add(connection)

    def connection_lost(self, connection: ControlAMP) -> None:
        """Forget a closed connection."""
        self._connections.discard(connection)

    def agent_ready(self, connection: ControlAMP) -> None:
        """An agent passed the handshake: push it everything."""
        if connection in self._connections:
            connection.changed()

    def current_document(self) -> tuple[int, Any]:
        """The current document's version and JSON (computed once per change)."""
        if self._document is None:
            self._document = self._encoder.document(
                self.configuration_service.deployment,
                self.cluster_state_service.as_deployment_state(),
            )
        return self._version, self._document

    def encoded_diff(self, acknowledged: tuple[int, Any]) -> bytes:
        """
        The encoded diff from an acknowledged (version, document) to the current.

        Connections that acknowledged the same version share one computation.
        """
        base, old = acknowledged
        if base not in self._diffs:
            _, document = self.current_document()
            self._diffs[base] = encode_diff(diff_documents(old, document))
        return self._diffs[base]

    def _state_changed(self, state: DeploymentState) -> None:
        self._changed()

    def _changed(self) -> None:
        self._version += 1
        self._document = None
        self._diffs = {}
        for connection in list(self._connections):
            connection.changed()
