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
