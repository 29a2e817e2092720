"""The eliot fields, messages and actions that flocker.route logs.

Routing changes are rare and logged as one action each; connections are
many, so each is one message written when it ends (never an action around
its bytes), carrying the byte counts and how it ended.
"""

from eliot import ActionType, Field, MessageType

LISTEN_ADDRESS = Field.for_types(
    "listen_address", [str], "The node address the router listens on."
)
ADDED = Field.for_types("added", [list], "External ports newly routed.")
REMOVED = Field.for_types("removed", [list], "External ports no longer routed.")
CHANGED = Field.for_types("changed", [list], "External ports routed to a new target.")

#: One call of ``set_routes`` that changed something.
SET_ROUTES = ActionType(
    "flocker:route:set_routes",
    [LISTEN_ADDRESS, ADDED, REMOVED, CHANGED],
    [],
    "The node's routes changed: listeners started, stopped or retargeted.",
)

EXTERNAL_PORT = Field.for_types("external_port", [int], "A routed external port.")
ERROR = Field.for_types("error", [str], "What went wrong.")
DELAY = Field.for_types("delay", [float, int], "Seconds until the next try.")

#: Listening on a routed port failed (e.g. it is in use); it is tried again.
LISTEN_FAILED = MessageType(
    "flocker:route:listen_failed",
    [LISTEN_ADDRESS, EXTERNAL_PORT, ERROR, DELAY],
    "The router could not listen on a routed port and will try again later.",
)

CLIENT = Field.for_types("client", [str], "The client's address, host:port.")
TARGET = Field.for_types("target", [str], "Where the connection went, host:port.")
BYTES_TO_TARGET = Field.for_types(
    "bytes_to_target", [int], "Bytes forwarded from the client to the target."
)
BYTES_TO_CLIENT = Field.for_types(
    "bytes_to_client", [int], "Bytes forwarded from the target to the client."
)
OUTCOME = Field.for_types(
    "outcome",
    [str],
    "How the connection ended: closed (normally), target_unreachable "
    "(connecting to the target failed), client_gone (the client left before "
    "the target answered) or error (a connection broke).",
)

#: One proxied connection ended.
CONNECTION = MessageType(
    "flocker:route:connection",
    [EXTERNAL_PORT, CLIENT, TARGET, BYTES_TO_TARGET, BYTES_TO_CLIENT, OUTCOME, ERROR],
    "A connection to a routed port was forwarded to its target and has ended.",
)
