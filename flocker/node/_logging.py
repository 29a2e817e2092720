"""The eliot fields, messages and actions that the node agents log."""

from eliot import ActionType, Field, MessageType

ITERATION = Field.for_types("iteration", [int], "Which convergence pass, from 1.")

#: One discover → report → calculate → run pass of the convergence loop.
CONVERGE_ITERATION = ActionType(
    "flocker:node:converge",
    [ITERATION],
    [],
    "The agent compared its node with the configuration and acted on it.",
)

#: The loop goes to sleep until a timer or a pushed update wakes it.
LOOP_SLEEP = MessageType(
    "flocker:node:loop:sleep",
    [
        Field.for_types("delay", [float, int], "Seconds until the next pass."),
        Field.for_types("failures", [int], "Consecutive failed passes so far."),
    ],
    "The convergence loop scheduled its next pass.",
)

#: The control service refused the node's state report (or it failed).
REPORT_FAILED = MessageType(
    "flocker:node:loop:report_failed",
    [Field.for_types("reason", [str], "Why the report did not get through.")],
    "The agent's state report failed; it goes on converging and reports again.",
)

AGENT_KIND = Field.for_types("agent", [str], "Which agent: dataset or container.")

#: The agent heard nothing from the control service for fence-after seconds.
FENCE_UP = MessageType(
    "flocker:node:fence:up",
    [
        AGENT_KIND,
        Field.for_types("silent", [float, int], "Seconds since anything came from it."),
        Field.for_types("fence_after", [float, int], "The agent.yml fence-after."),
        Field.for_types("connected", [bool], "Whether a connection was open all the same."),
    ],
    "The agent fenced itself: it stops exposing (and running the applications "
    "of) datasets that fail over automatically, until the control service pushes "
    "a configuration again.",
)

#: A configuration arrived while fenced.
FENCE_DOWN = MessageType(
    "flocker:node:fence:down",
    [
        AGENT_KIND,
        Field.for_types("fenced_for", [float, int], "Seconds the fence was up."),
    ],
    "The control service pushed a configuration to a fenced agent: the "
    "configuration decides again what the node exposes and runs.",
)

CONTROL_HOST = Field.for_types("control_host", [str], "A control service instance's host.")
CONTROL_PORT = Field.for_types("control_port", [int], "Its agent (AMP) port.")

#: One connection attempt to one of the control service instances.
CONTROL_CONNECT = ActionType(
    "flocker:node:control:connect",
    [
        AGENT_KIND,
        CONTROL_HOST,
        CONTROL_PORT,
        Field.for_types("instances", [int], "How many instances agent.yml lists."),
    ],
    [],
    "The agent connected (or failed to connect) to this control service "
    "instance; after a failure or a lost connection it tries the next one.",
)

#: A new connection to a control service instance stayed silent too long.
CONTROL_NO_ANSWER = MessageType(
    "flocker:node:control:no_answer",
    [
        CONTROL_HOST,
        CONTROL_PORT,
        Field.for_types("timeout", [float, int], "Seconds it was given."),
    ],
    "The instance accepted the connection but said nothing (no TLS or version "
    "handshake) in time; the agent gives it up and tries the next instance.",
)

#: An application's health, as the container agent's probes see it, changed.
HEALTH_CHANGED = MessageType(
    "flocker:node:container:health",
    [
        Field.for_types("name", [str], "The application."),
        Field.for_types("status", [str], "starting, healthy or unhealthy."),
        Field.for_types(
            "revision", [int, type(None)],
            "The configured revision its instance runs, or None for an older instance.",
        ),
        Field.for_types("reason", [str, type(None)], "What the last failed probe saw, or None."),
    ],
    "The health of an application's instance on this node changed (a new "
    "instance starts at starting); the node reports it to the control service.",
)
