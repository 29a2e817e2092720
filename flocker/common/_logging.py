"""The eliot fields, messages and actions that flocker.common logs."""

from eliot import ActionType, Field, MessageType

ARGV = Field.for_types("argv", [list], "A command line, as a list of strings.")
EXIT_CODE = Field.for_types(
    "exit_code", [int, type(None)], "The exit status, or null if killed by a signal."
)
STDERR = Field.for_types("stderr", [str], "The end of the command's standard error.")

#: One run of an external command through ``run_command``.
RUN_COMMAND = ActionType(
    "flocker:common:run_command",
    [ARGV],
    [EXIT_CODE, STDERR],
    "An external command ran as a child process of a Flocker daemon.",
)

ATTEMPT = Field.for_types("attempt", [int], "Which try this was, counting from 1.")
ERROR = Field.for_types("error", [str], "The error that the try failed with.")
DELAY = Field.for_types("delay", [float, int], "Seconds until the next try.")

#: A try of a retried operation failed and another is scheduled.
RETRYING = MessageType(
    "flocker:common:retry:retrying",
    [ATTEMPT, ERROR, DELAY],
    "A try failed with an error that is expected to pass; it will be tried again.",
)

TWISTED_LOG = MessageType(
    "flocker:common:twisted_log",
    [
        Field.for_types("message", [str], "The formatted Twisted log event."),
        Field.for_types("log_level", [str], "The Twisted log level."),
        Field.for_types("log_namespace", [str], "The Twisted logger's namespace."),
    ],
    "An event logged through Twisted's own logging system.",
)
