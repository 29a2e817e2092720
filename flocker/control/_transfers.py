"""
The transfers in progress, as the REST API gathers them from the nodes.

``GET /v1/state/transfers`` asks every connected dataset agent, over AMP
(`TransfersCommand`), what it is receiving now.  One stalled agent must not
stall the answer: each agent has `TRANSFERS_BOUND` seconds, and the answer
lists what arrived in that time and names the nodes whose agents did not
answer (too late, or with an error), so a client can tell "no transfers"
from "no answer".  A late answer is dropped (its eliot action ends failed).
"""

from __future__ import annotations

import json
from typing import Any

from eliot import start_action
from pyrsistent import PClass, field, pvector_field
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime

from ._protocol import TransfersCommand, send_with_context

__all__ = ["TRANSFERS_BOUND", "GatheredTransfers", "gather_transfers"]

#: Seconds each dataset agent has to say what it is receiving.
TRANSFERS_BOUND = 2.0


class GatheredTransfers(PClass):
    """
    What the dataset agents answered about their transfers.

    :ivar transfers: the transfers of the agents that answered, each with
        ``node_uuid`` (the receiving node), sorted by dataset then node.
    :ivar unanswered: the UUIDs of the nodes whose agents did not answer in
        time (or answered with an error), sorted.
    """

    transfers = field(type=list, mandatory=True)
    unanswered = pvector_field(str)


def _dataset_agents(agents: Any) -> list[tuple[str, Any]]:
    """The connected, handshaken dataset agents as (node UUID, connection)."""
    return sorted(
        (
            (connection.node_uuid, connection)
            for connection in agents.connections
            if connection.agent_kind == "dataset" and connection.node_uuid is not None
        ),
        key=lambda pair: pair[0],
    )


def _ask(connection: Any, node_uuid: str, clock: IReactorTime, bound: float) -> Deferred[Any]:
    """One agent's transfers (each with ``node_uuid``), or a failure after ``bound``."""
    action = start_action(action_type="flocker:control:amp:transfers", node_uuid=node_uuid)
    sent = send_with_context(connection, action, TransfersCommand)
    sent.addTimeout(bound, clock)
    return sent.addCallback(
        lambda answer: [{**entry, "node_uuid": node_uuid} for entry in json.loads(answer["result"])]
    )


def gather_transfers(
    agents: Any, clock: IReactorTime, bound: float = TRANSFERS_BOUND
) -> Deferred[GatheredTransfers]:
    """
    Ask every dataset agent connected to ``agents`` (the `ControlAMPService`)
    for its transfers, all at once, and answer after at most ``bound``
    seconds of ``clock`` with what arrived and who did not answer.
    """
    asked = _dataset_agents(agents)
    answers = DeferredList(
        [_ask(connection, node_uuid, clock, bound) for node_uuid, connection in asked],
        consumeErrors=True,
    )

    # With several control instances (`flocker.control._relay.AgentRelay`),
    # the agents connected to the others are asked through them, at once.
    remote = getattr(agents, "remote_transfers", None)
    elsewhere: Deferred[GatheredTransfers] | None = (
        None if remote is None else remote(bound)
    )

    async def gathered() -> GatheredTransfers:
        results = await answers
        transfers = []
        unanswered = []
        for (node_uuid, _), (ok, value) in zip(asked, results, strict=True):
            if ok:
                transfers.extend(value)
            else:
                unanswered.append(node_uuid)
        if elsewhere is not None:
            other = await elsewhere
            transfers.extend(other.transfers)
            unanswered.extend(other.unanswered)
        transfers.sort(key=lambda t: (t["dataset_id"], t["node_uuid"]))
        return GatheredTransfers(transfers=transfers, unanswered=sorted(unanswered))

    return Deferred.fromCoroutine(gathered())
