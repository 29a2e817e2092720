"""The eliot fields, messages and actions of the agent protocol (AMP over TLS).

Named ``flocker:control:amp:<verb>``.  Every command runs inside an eliot
action on the sending side, and the receiving side continues that task, so
one push or report reads as one tree across the two processes.
"""

from eliot import ActionType, Field, MessageType

NODE_UUID = Field.for_types(
    "node_uuid", [str, type(None)], "The node UUID from the peer's certificate."
)
AGENT_KIND = Field.for_types(
    "agent_kind", [str], 'The kind of agent: "dataset" or "container".'
)
PROTOCOL_VERSION = Field.for_types(
    "protocol_version", [int], "The agent protocol version a party speaks."
)
REASON = Field.for_types("reason", [str], "Why, in words.")
BASE = Field.for_types(
    "base", [int], "The document version a diff applies to (0: a full document)."
)
VERSION = Field.for_types("version", [int], "The document version a push carries.")
SIZE = Field.for_types("size", [int], "The encoded size in bytes.")
CLAIMED_UUID = Field.for_types(
    "claimed_uuid", [str], "The node UUID a state report claims to be for."
)

#: An agent finished the version handshake and now receives pushes.
AGENT_CONNECTED = MessageType(
    "flocker:control:amp:agent_connected",
    [NODE_UUID, AGENT_KIND, PROTOCOL_VERSION],
    "An agent connected and passed the version handshake.",
)

#: An agent's connection closed.
AGENT_DISCONNECTED = MessageType(
    "flocker:control:amp:agent_disconnected",
    [NODE_UUID, REASON],
    "An agent's connection to the control service closed.",
)

#: The control service refused an agent (version, kind or certificate).
AGENT_REFUSED = MessageType(
    "flocker:control:amp:agent_refused",
    [NODE_UUID, REASON],
    "The control service refused an agent and closes its connection.",
)

#: The agent side of the version handshake.
HANDSHAKE = ActionType(
    "flocker:control:amp:handshake",
    [AGENT_KIND, PROTOCOL_VERSION],
    [],
    "An agent tells the control service its protocol version and kind.",
)

#: A node state report (the agent sends it, the control merges it).
REPORT_STATE = ActionType(
    "flocker:control:amp:report_state",
    [NODE_UUID, SIZE],
    [],
    "An agent reports its node's state to the control service.",
)

#: A state report for another node than the certificate's was refused.
IDENTITY_REFUSED = MessageType(
    "flocker:control:amp:identity_refused",
    [NODE_UUID, CLAIMED_UUID],
    "An agent reported state for a node other than its certificate's; refused.",
)

#: The control service pushes (a diff of) configuration and state to an agent.
PUSH_CLUSTER_STATUS = ActionType(
    "flocker:control:amp:push",
    [NODE_UUID, BASE, VERSION, SIZE],
    [],
    "The control service sends an agent the configuration and cluster state.",
)

#: An agent applied a push and handed the result to its callback.
CLUSTER_UPDATED = ActionType(
    "flocker:control:amp:cluster_updated",
    [BASE, VERSION],
    [],
    "An agent received the configuration and cluster state.",
)

#: A keep-alive went unanswered; the connection is dropped.
KEEPALIVE_TIMEOUT = MessageType(
    "flocker:control:amp:keepalive_timeout",
    [NODE_UUID],
    "The peer did not answer a keep-alive in time; the connection is dropped.",
)

#: A keep-alive round trip (sent by both sides).
PING = ActionType(
    "flocker:control:amp:ping",
    [],
    [],
    "A keep-alive: the peer is alive if it answers.",
)
