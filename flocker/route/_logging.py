"""The eliot fields, messages and actions that flocker.route logs.

Routing changes are rare and logged as one action each; connections are
many, so each is one message written when it ends (never an action around
its bytes), carrying where it went, how long it was held, the byte counts
and how it ended.
"""

from eliot import ActionType, Field, MessageType

LISTEN_ADDRESS = Field.for_types(
    "listen_address", [str], "The node address the router listens on."
)
ADDED = Field.for_types("added", [list], "External ports newly routed.")
REMOVED = Field.for_types("removed", [list], "External ports no longer routed.")
CHANGED = Field.for_types(
    "changed", [list], "External ports whose targets or hold timeout changed."
)

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
TARGET = Field.for_types(
    "target",
    [str],
    "The target the connection was forwarded to, host:port; empty if none was.",
)
UNREACHABLE = Field.for_types(
    "unreachable",
    [list],
    "The targets (host:port) that connecting to failed, in the order tried.",
)
HELD = Field.for_types(
    "held",
    [float, int],
    "Seconds the connection was held waiting for a target (0 if never).",
)
BYTES_TO_TARGET = Field.for_types(
    "bytes_to_target", [int], "Bytes forwarded from the client to the target."
)
BYTES_TO_CLIENT = Field.for_types(
    "bytes_to_client", [int], "Bytes forwarded from the target to the client."
)
OUTCOME = Field.for_types(
    "outcome",
    [str],
    "How the connection ended: closed (normally, after being forwarded), "
    "error (a forwarded connection broke), client_gone (the client left "
    "before it was forwarded), held_too_long (held for the route's hold "
    "timeout without a reachable target), unrouted (held while its port "
    "stopped being routed) or router_stopped (held while the router stopped).",
)

#: One connection accepted on a routed port ended.
CONNECTION = MessageType(
    "flocker:route:connection",
    [
        EXTERNAL_PORT,
        CLIENT,
        TARGET,
        UNREACHABLE,
        HELD,
        BYTES_TO_TARGET,
        BYTES_TO_CLIENT,
        OUTCOME,
        ERROR,
    ],
    "A connection to a routed port has ended, forwarded or not.",
)
