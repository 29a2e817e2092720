"""Helpers shared by every Flocker process: commands, retries, logging, config."""

from ._actions import logged
from ._addresses import check_port, format_address, parse_address
from ._config import ConfigurationError, load_config, validate
from ._daemonlog import start_daemon_logging, twisted_to_eliot
from ._process import (
    DEFAULT_TIMEOUT,
    CommandFailed,
    CommandResult,
    CommandTimedOut,
    run_command,
)
from ._reactors import TCPTimeReactor
from ._retry import LoopExceeded, backoff, loop_until, retry_failure
from ._sockets import no_delay

__all__ = [
    "DEFAULT_TIMEOUT",
    "CommandFailed",
    "CommandResult",
    "CommandTimedOut",
    "ConfigurationError",
    "LoopExceeded",
    "TCPTimeReactor",
    "backoff",
    "check_port",
    "format_address",
    "load_config",
    "logged",
    "loop_until",
    "no_delay",
    "parse_address",
    "retry_failure",
    "run_command",
    "start_daemon_logging",
    "twisted_to_eliot",
    "validate",
]
