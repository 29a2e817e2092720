"""
The agents' side of the agent protocol (see `flocker.control._protocol`).

`AgentAMPClient` is a service that keeps one connection to the control
service open (reconnecting with backoff through Twisted's ``ClientService``),
does the version handshake, hands every pushed configuration and cluster
state to a ``cluster_updated(configuration, cluster_state)`` callback, and
sends the node's state with `AgentAMPClient.report_state`.  After every
(re)connection it sends the last reported state again, so a restarted
control service learns the node's state without waiting for a change.
Every box that arrives from the control service is passed to the
``heard`` hook first: the agents' fence (``flocker.node._fence``) goes up
when nothing came for too long.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import attrs
from eliot import write_failure
from pyrsistent import InvariantException
from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, connectionDone
from twisted.protocols import amp
from twisted.python.failure import Failure

from flocker.ca import TLSFiles, client_context_factory
from flocker.common import no_delay

from ._model import Deployment
from ._protocol import (
    KEEPALIVE_INTERVAL,
    PROTOCOL_VERSION,
    ClusterStatusCommand,
    KeepAlive,
    NodeStateCommand,
    NoOpCommand,
    OutOfSync,
    SnapshotCommand,
    TransfersCommand,
    VersionCommand,
    abort,
    continue_task,
    is_connection_gone,
    ping,
    send_with_context,
)
from ._protocol_diff import DiffError, apply_diff, decode_diff
from ._protocol_logging import (
    AGENT_REFUSED,
    CLUSTER_UPDATED,
    HANDSHAKE,
    KEEPALIVE_TIMEOUT,
    REPORT_STATE,
)
from ._serialization import (
    CURRENT_FORMAT_VERSION,
    SerializationError,
    deployment_from_json,
    deployment_state_from_json,
    node_state_from_json,
    serialize_node_state,
)
from ._state import DeploymentState, NodeState

__all__ = ["AgentAMP", "AgentAMPClient", "NotConnected", "default_retry_policy"]

#: The callback agents give: called with each pushed (configuration, state).
ClusterUpdated = Callable[[Deployment, DeploymentState], None]


class NotConnected(Exception):
    """There is no connection to the control service right now."""


#: Seconds a connection attempt to the control service may take.  Short: a
#: node cut off from the network retries every few seconds, so that once it
#: is back it reconnects (and is heard from) well within the control
#: service's ``failover_after``, rather than after a long-hanging attempt.
CONNECT_TIMEOUT = 2.0


def default_retry_policy(
    initial: float = 0.2, factor: float = 1.5, maximum: float = 2.0
) -> Callable[[int], float]:
    """
    Reconnection delays growing from ``initial`` to ``maximum``, with
    jitter.  The maximum is small for the same reason as `CONNECT_TIMEOUT`:
    an agent back from a partition must be heard from again within seconds,
    or a node that came back in time would be failed over all the same.
    """

    def policy(attempt: int) -> float:
        delay = min(initial * factor ** min(attempt, 64), maximum)
        return delay * (0.75 + random.random() / 2)  # noqa: S311 (not crypto)

    return policy


class AgentLocator(amp.CommandLocator):
    """The agent's responders for its connection to the control service."""

    def __init__(self, connection: AgentAMP) -> None:
        """Answer for ``connection``."""
        self.connection = connection

    @ClusterStatusCommand.responder
    def cluster_status(
        self, base: int, version: int, diff: bytes, eliot_context: str
    ) -> dict[str, Any]:
        """Apply a pushed diff and tell the agent the new configuration and state."""
        with continue_task(eliot_context):
            self.connection.cluster_status(base, version, diff)
        return {}

    @NoOpCommand.responder
    def noop(self, eliot_context: str) -> dict[str, Any]:
        """Answer the control service's keep-alive."""
        with continue_task(eliot_context):
            return {}

    @TransfersCommand.responder
    def transfers(self, eliot_context: str) -> dict[str, Any]:
        """The transfers this agent is receiving (none if it has no receiver)."""
        handler = self.connection.client.transfers
        with continue_task(eliot_context):
            found = handler() if handler is not None else []
        return {"result": json.dumps(found)}

    @SnapshotCommand.responder
    def snapshot(
        self, operation: str, dataset_id: str, name: str, eliot_context: str
    ) -> Deferred[dict[str, Any]]:
        """Hand a snapshot operation to the agent's ``snapshots`` handler."""
        handler = self.connection.client.snapshots
        with continue_task(eliot_context):
            if handler is None:
                error = {"code": "bad_request", "description": "not a dataset agent"}
                return succeed({"result": json.dumps({"error": error})})
            answer = handler(operation, dataset_id, name)
        return answer.addCallback(lambda result: {"result": json.dumps(result)})


class AgentAMP(amp.AMP):
    """The agent's end of its connection to the control service."""

    def __init__(self, client: AgentAMPClient) -> None:
        """Talk for ``client``."""
        super().__init__(locator=AgentLocator(self))  # type: ignore[no-untyped-call]  # Twisted's
        self.client = client
        #: The document version (and document) last received on this connection.
        self.version = 0
        self.document: Any = None
        self._decoded: tuple[Deployment, DeploymentState] | None = None
        self._keepalive = KeepAlive(
            client.reactor,
            lambda: ping(self),
            self._keepalive_timed_out,
            client.keepalive_interval,
        )

    def connectionMade(self) -> None:  # noqa: N802
        """Start the version handshake (TLS buffers it until its own is done)."""
        super().connectionMade()  # type: ignore[no-untyped-call]  # Twisted's
        no_delay(self.transport)  # reports and pushes go out at once
        action = HANDSHAKE(
            agent_kind=self.client.agent_kind,
            protocol_version=self.client.protocol_version,
        )
        answered = send_with_context(
            self,
            action,
            VersionCommand,
            protocol_version=self.client.protocol_version,
            agent_kind=self.client.agent_kind,
            **({} if self.client.fence_after is None else {"fence_after": self.client.fence_after}),
        )
        answered.addCallbacks(self._handshaken, self._refused)

    def ampBoxReceived(self, box: amp.AmpBox) -> None:  # noqa: N802 (Twisted's name)
        """Every box is a sign of life of the control service: tell the client first."""
        self.client.heard_from_control()
        super().ampBoxReceived(box)  # type: ignore[no-untyped-call]  # Twisted's

    def _handshaken(self, response: dict[str, Any]) -> None:
        self._keepalive.start()
        self.client.connection_ready(self)

    def _refused(self, failure: Failure) -> None:
        if not is_connection_gone(failure):
            AGENT_REFUSED.log(node_uuid=None, reason=failure.getErrorMessage())
        if self.transport is not None:
            self.transport.loseConnection()

    def cluster_status(self, base: int, version: int, data: bytes) -> None:
        """Apply a push; hand the result to the client's callback."""
        with CLUSTER_UPDATED(base=base, version=version):
            if base != 0 and base != self.version:
                raise OutOfSync(f"have version {self.version}, not {base}")
            previous = None if base == 0 else self.document
            try:
                document = apply_diff(decode_diff(data), previous)
                if not isinstance(document, dict) or set(document) != {
                    "configuration",
                    "state",
                }:
                    raise DiffError("not a configuration and state document")
                configuration, state = self._decode(previous, document)
            except (DiffError, SerializationError, KeyError, TypeError) as e:
                raise OutOfSync(f"cannot apply the update: {e}") from None
            self.version, self.document = version, document
            self._decoded = (configuration, state)
            self.client.updated(configuration, state)

    def _decode(
        self, previous: Any, document: dict[str, Any]
    ) -> tuple[Deployment, DeploymentState]:
        """
        The model values of a document, reusing those of unchanged parts.

        `apply_diff` shares every unchanged subtree with the previous
        document, so identity (``is``) tells what is unchanged; with hundreds
        of nodes this saves decoding every node's state on every push.
        """
        old_configuration, old_state = self._decoded or (None, None)
        if previous is None or old_configuration is None or old_state is None:
            return (
                deployment_from_json(document["configuration"]),
                deployment_state_from_json(document["state"]),
            )
        configuration = _decode_configuration(
            previous["configuration"], document["configuration"], old_configuration
        )
        if document["state"] is previous["state"]:
            return configuration, old_state
        state_doc, old_doc = document["state"], previous["state"]
        if (
            not isinstance(state_doc, dict)
            or set(state_doc) != {"nodes"}
            or not isinstance(state_doc["nodes"], dict)
        ):
            return configuration, deployment_state_from_json(state_doc)
        nodes = {}
        for uuid, node_doc in state_doc["nodes"].items():
            if node_doc is old_doc["nodes"].get(uuid) and uuid in old_state.nodes:
                nodes[uuid] = old_state.nodes[uuid]
            else:
                node = node_state_from_json(node_doc)
                if node.uuid != uuid:
                    raise SerializationError(
                        f"/state/nodes/{uuid}", "keyed by another node's UUID"
                    )
                nodes[uuid] = node
        return configuration, DeploymentState(nodes=nodes)

    def send_state(self, state: NodeState) -> Deferred[None]:
        """Send a state report; fires when the control service accepted it."""
        data = serialize_node_state(state)
        action = REPORT_STATE(node_uuid=state.uuid, size=len(data))
        sent = send_with_context(self, action, NodeStateCommand, state=data)
        return sent.addCallback(lambda _: None)

    def _keepalive_timed_out(self) -> None:
        KEEPALIVE_TIMEOUT.log(node_uuid=None)
        if self.transport is not None:
            abort(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """Stop keep-alives and tell the client."""
        self._keepalive.stop()
        self.client.connection_lost(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]  # Twisted's


def _decode_configuration(previous: Any, document: Any, old: Deployment) -> Deployment:
    """
    Decode a configuration document, reusing the nodes of ``old`` whose
    subtrees are unchanged (the same objects) since ``previous``.

    Anything unusual (another format version, a partial document that does
    not stand on its own) falls back to decoding the whole document.
    """
    if document is previous:
        return old
    if not (
        isinstance(document, dict)
        and isinstance(previous, dict)
        and set(document) == {"format_version", "nodes", "leases", "environments"}
        and document["format_version"] == CURRENT_FORMAT_VERSION
        and previous.get("format_version") == CURRENT_FORMAT_VERSION
        and isinstance(document["nodes"], dict)
        and isinstance(previous.get("nodes"), dict)
    ):
        return deployment_from_json(document)
    before = previous["nodes"]
    changed = {
        uuid: node
        for uuid, node in document["nodes"].items()
        if node is not before.get(uuid) or uuid not in old.nodes
    }
    try:
        nodes = dict(
            deployment_from_json(
                {
                    "format_version": CURRENT_FORMAT_VERSION,
                    "nodes": changed,
                    "leases": {},
                    "environments": {},
                }
            ).nodes
        )
        if document["leases"] is previous.get("leases"):
            leases = old.leases
        else:
            leases = deployment_from_json(
                {
                    "format_version": CURRENT_FORMAT_VERSION,
                    "nodes": {},
                    "leases": document["leases"],
                    "environments": {},
                }
            ).leases
        if document["environments"] is previous.get("environments"):
            environments = old.environments
        else:
            environments = deployment_from_json(
                {
                    "format_version": CURRENT_FORMAT_VERSION,
                    "nodes": {},
                    "leases": {},
                    "environments": document["environments"],
                }
            ).environments
        for uuid in document["nodes"]:
            if uuid not in nodes:
                nodes[uuid] = old.nodes[uuid]
        return Deployment(nodes=nodes, leases=leases, environments=environments)
    except (SerializationError, InvariantException):
        # E.g. a changed replica whose unchanged primary is elsewhere: the
        # partial document breaks "one primary per dataset". Decode it all.
        return deployment_from_json(document)


class _AgentFactory(Factory):
    """Makes the `AgentAMP` for each connection attempt."""

    def __init__(self, client: AgentAMPClient) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> AgentAMP:  # noqa: N802
        """A protocol for one connection to the control service."""
        return AgentAMP(self.client)


@attrs.define(slots=False, eq=False)
class AgentAMPClient(Service):
    """
    An agent's connection to the control service, kept open while running.

    :ivar reactor: for timing reconnections and keep-alives.
    :ivar endpoint: where the control service is (a TLS client endpoint; see
        `for_control_service`).
    :ivar agent_kind: ``"dataset"`` or ``"container"``.
    :ivar cluster_updated: called with ``(configuration, cluster_state)`` on
        every push; what it raises is logged, not sent back.
    :ivar retry_policy: seconds to wait before reconnection attempt N.
    :ivar protocol_version: the version announced in the handshake.
    """

    reactor: IReactorTime
    endpoint: IStreamClientEndpoint
    agent_kind: str
    cluster_updated: ClusterUpdated
    retry_policy: Callable[[int], float] = attrs.field(factory=default_retry_policy)
    keepalive_interval: float = KEEPALIVE_INTERVAL
    protocol_version: int = PROTOCOL_VERSION
    #: ``snapshots(operation, dataset_id, name)`` answers `SnapshotCommand`
    #: with a Deferred JSON-compatible dict (the dataset agent gives one).
    snapshots: Callable[[str, str, str], Deferred[dict[str, Any]]] | None = None
    #: ``transfers()`` answers `TransfersCommand` (the dataset agent gives one).
    transfers: Callable[[], list[dict[str, Any]]] | None = None
    #: ``heard()`` is called for every AMP box that comes from the control
    #: service (pushes, answers to keep-alives and reports, the handshake):
    #: the agents' fence measures the silence with it.
    heard: Callable[[], None] | None = None
    #: The agent's fence-after, told to the control service at the handshake
    #: (which refuses one too slow for its failover_after); ``None``: not told.
    fence_after: float | None = None
    _client: ClientService | None = attrs.field(default=None, init=False)
    _connection: AgentAMP | None = attrs.field(default=None, init=False)
    _latest_state: NodeState | None = attrs.field(default=None, init=False)
    _waiting: list[Deferred[None]] = attrs.field(factory=list, init=False)

    @classmethod
    def for_control_service(
        cls,
        reactor: IReactorTime,
        host: str,
        port: int,
        tls_files: TLSFiles,
        agent_kind: str,
        cluster_updated: ClusterUpdated,
        bind_address: str | None = None,
        **kwargs: Any,
    ) -> AgentAMPClient:
        """
        A client for the control service at ``host:port``, with a node's
        files; with ``bind_address`` (the node's own address) connections
        leave from it, so the node is one address on the network (cut it
        off and its agents are cut off too).
        """
        bind = None if bind_address is None else (bind_address, 0)
        endpoint = wrapClientTLS(
            client_context_factory(tls_files.credential, tls_files.authority, host),
            HostnameEndpoint(
                reactor, host.encode("ascii"), port, timeout=CONNECT_TIMEOUT, bindAddress=bind
            ),
        )
        return cls(reactor, endpoint, agent_kind, cluster_updated, **kwargs)

    # -- the agent's interface -----------------------------------------------

    def report_state(self, state: NodeState) -> Deferred[None]:
        """
        Send the node's state to the control service.

        The state is also remembered and sent again after every reconnection.

        :return: a Deferred firing when the control service accepted it, or
            failing with `NotConnected` (it will be sent once connected) or
            with the control service's refusal.
        """
        self._latest_state = state
        if self._connection is None:
            return fail(NotConnected("not connected to the control service"))
        return self._connection.send_state(state)

    def connected(self) -> Deferred[None]:
        """A Deferred firing once a connection has passed the handshake."""
        if self._connection is not None:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._waiting.append(waiting)
        return waiting

    @property
    def is_connected(self) -> bool:
        """Whether a handshaken connection is open."""
        return self._connection is not None

    # -- life cycle ----------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        """Connect, and keep reconnecting while running."""
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's
        self._client = ClientService(
            self.endpoint,
            _AgentFactory(self),
            retryPolicy=self.retry_policy,
            clock=self.reactor,
        )
        self._client.startService()

    def stopService(self) -> Deferred[None]:  # noqa: N802
        """Disconnect and stop reconnecting."""
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's
        client, self._client = self._client, None
        if client is None:
            return succeed(None)
        return client.stopService()

    # -- from the protocol ---------------------------------------------------

    def connection_ready(self, connection: AgentAMP) -> None:
        """A connection passed the handshake: resend the latest state."""
        self._connection = connection
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        if self._latest_state is not None:
            connection.send_state(self._latest_state).addErrback(self._report_failed)

    def _report_failed(self, failure: Failure) -> None:
        if not is_connection_gone(failure):
            write_failure(failure)

    def connection_lost(self, connection: AgentAMP) -> None:
        """A connection closed."""
        if self._connection is connection:
            self._connection = None

    def heard_from_control(self) -> None:
        """A box came from the control service: call the ``heard`` hook."""
        if self.heard is None:
            return
        try:
            self.heard()
        except Exception:
            write_failure(Failure())

    def updated(self, configuration: Deployment, state: DeploymentState) -> None:
        """Hand a pushed configuration and state to the callback."""
        try:
            self.cluster_updated(configuration, state)
        except Exception:
            write_failure(Failure())
