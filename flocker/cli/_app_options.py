"""
The options of ``flocker apps deploy|update|scale``, checked before any
request: ports, environment, links, volumes, the ``--health-*`` options,
restart policy, memory limit, CPU shares, command line and how many
instances run.  Each refuses a bad
value with a one-line `CLIError` naming the option.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..apiclient import (
    MAXIMUM_INSTANCES,
    ContainerPort,
    HealthCheck,
    Link,
    RestartPolicy,
)
from ._errors import CLIError
from ._format import parse_size

__all__ = [
    "HealthOptions",
    "add_health_options",
    "check_health_port",
    "parse_command_line",
    "parse_cpu_shares",
    "parse_env",
    "parse_health_options",
    "parse_link",
    "parse_memory_limit",
    "parse_port",
    "parse_replicas",
    "parse_restart",
    "parse_volume",
    "port_number",
]

_VOLUME = re.compile(r"^(?P<dataset>[^:]+):(?P<path>/.*)$")

def port_number(text: str, what: str, spec: str) -> int:
    """A TCP port number, or a `CLIError` naming the option."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise CLIError(f"bad {what} {spec!r}: {text!r} is not a port number (1-65535)")
    return number


def parse_port(text: str) -> ContainerPort:
    """``EXTERNAL:INTERNAL`` (``--port 8080:80``) as a `ContainerPort`."""
    external, sep, internal = text.partition(":")
    if not sep:
        raise CLIError(f"bad --port {text!r}: give EXTERNAL:INTERNAL, e.g. 8080:80")
    return ContainerPort(
        external=port_number(external, "--port", text),
        internal=port_number(internal, "--port", text),
    )


def parse_env(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (``--env``) as a pair."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CLIError(f"bad --env {text!r}: give KEY=VALUE")
    return key, value


def parse_link(text: str) -> Link:
    """``ALIAS:LOCAL_PORT:REMOTE_PORT`` (``--link``) as a `Link`."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0]:
        raise CLIError(f"bad --link {text!r}: give ALIAS:LOCAL_PORT:REMOTE_PORT")
    return Link(
        alias=parts[0],
        local_port=port_number(parts[1], "--link", text),
        remote_port=port_number(parts[2], "--link", text),
    )


def parse_volume(text: str) -> tuple[str, str]:
    """``DATASET:/path`` (``--volume``) as (dataset, mountpoint)."""
    match = _VOLUME.match(text)
    if match is None:
        raise CLIError(f"bad --volume {text!r}: give DATASET:/absolute/path")
    return match["dataset"], match["path"]


#: The longest interval, timeout or start period (a day), as the API allows.
_MAXIMUM_SECONDS = 86400.0

#: The smallest memory limit the REST API accepts.
_MINIMUM_MEMORY_LIMIT = 4 * 1024 * 1024

#: The ``--health-*`` timing options and the `HealthCheck` fields they set.
_TIMINGS = (
    ("--health-interval", "interval"),
    ("--health-timeout", "timeout"),
    ("--health-retries", "retries"),
    ("--health-start-period", "start_period"),
)


# --------------------------------------------------------------------------
# --health-*


def add_health_options(parser: argparse.ArgumentParser, removable: bool) -> None:
    """
    Add ``--health-http``, ``--health-tcp`` (and, if ``removable``,
    ``--no-health``) and the ``--health-*`` timings.
    """
    kinds = parser.add_mutually_exclusive_group()
    kinds.add_argument(
        "--health-http",
        metavar="PORT:PATH",
        help="healthy when GET PATH on container port PORT answers 2xx or 3xx",
    )
    kinds.add_argument(
        "--health-tcp",
        metavar="PORT",
        help="healthy when container port PORT accepts a TCP connection",
    )
    if removable:
        kinds.add_argument(
            "--no-health",
            action="store_true",
            help="remove its health check (then: a TCP connect on its lowest "
            "published port)",
        )
    parser.add_argument(
        "--health-interval", metavar="S", help="seconds between probes (default 5)"
    )
    parser.add_argument(
        "--health-timeout", metavar="S", help="seconds a probe may take (default 2)"
    )
    parser.add_argument(
        "--health-retries",
        metavar="N",
        help="failures in a row that make it unhealthy (default 3)",
    )
    parser.add_argument(
        "--health-start-period",
        metavar="S",
        help="seconds after a start in which failures do not count (default 30)",
    )


def _seconds(option: str, text: str, zero: bool) -> float:
    """A number of seconds above 0 (or at least 0) and at most a day."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
        bound = "0 or more" if zero else "above 0"
        raise CLIError(f"bad {option} {text!r}: give a number of seconds {bound}")
    if value > _MAXIMUM_SECONDS:
        raise CLIError(f"bad {option} {text!r}: at most {_MAXIMUM_SECONDS:g} seconds")
    return value


def _retries(text: str) -> int:
    """``--health-retries``: an integer from 1 to 1000."""
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise CLIError(f"bad --health-retries {text!r}: give a whole number from 1 to 1000")
    return int(text)


@attrs.frozen
class HealthOptions:
    """
    The ``--health-*`` options given, checked.

    :ivar check: the check ``--health-http`` or ``--health-tcp`` asks for
        (with the default timings), or ``None``.
    :ivar remove: ``--no-health``.
    :ivar timings: `HealthCheck` field → value, for the timings given.
    """

    check: HealthCheck | None = None
    remove: bool = False
    timings: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def given(self) -> bool:
        """Whether any ``--health-*`` option was given."""
        return self.check is not None or self.remove or bool(self.timings)

    def resolve(self, name: str, current: HealthCheck | None) -> HealthCheck | None:
        """
        The health check an application whose check is ``current`` gets:
        the new kind (keeping the current timings unless given), or the
        current check with the timings given, or none (``--no-health``);
        ``current`` when no ``--health-*`` option was given.

        :raise CLIError: timings for an application that has no check of
            its own and is given none.
        """
        if not self.given:
            return current
        if self.remove:
            return None
        base = self.check
        if base is None:
            if current is None:
                raise CLIError(
                    f"application {name} has no health check of its own to adjust: "
                    "give --health-http PORT:PATH or --health-tcp PORT"
                )
            return current.set(**self.timings)
        if current is not None:
            base = base.set(
                interval=current.interval,
                timeout=current.timeout,
                retries=current.retries,
                start_period=current.start_period,
            )
        return base.set(**self.timings)


def parse_health_options(options: argparse.Namespace) -> HealthOptions:
    """The ``--health-*`` options of a command line, checked."""
    check = None
    if options.health_http is not None:
        text = options.health_http
        port, sep, path = text.partition(":")
        if not sep or not path.startswith("/") or any(c.isspace() for c in path):
            raise CLIError(
                f"bad --health-http {text!r}: give PORT:PATH, e.g. 80:/healthz "
                "(the path starts with / and has no spaces)"
            )
        check = HealthCheck(
            kind="http", port=port_number(port, "--health-http", text), path=path
        )
    elif options.health_tcp is not None:
        text = options.health_tcp
        check = HealthCheck(kind="tcp", port=port_number(text, "--health-tcp", text))
    timings: dict[str, Any] = {}
    for option, name in _TIMINGS:
        text = getattr(options, option[2:].replace("-", "_"))
        if text is None:
            continue
        if name == "retries":
            timings[name] = _retries(text)
        else:
            timings[name] = _seconds(option, text, zero=name == "start_period")
    remove = bool(getattr(options, "no_health", False))
    if remove and timings:
        raise CLIError("--no-health removes the health check: give no --health-* timings")
    return HealthOptions(check=check, remove=remove, timings=timings)


def check_health_port(name: str, health: HealthCheck | None, ports: Iterable[ContainerPort]) -> None:
    """Refuse a health check on a port the application does not publish (internal)."""
    if health is None:
        return
    internal = sorted({p.internal for p in ports})
    if health.port not in internal:
        published = ", ".join(map(str, internal)) or "none"
        raise CLIError(
            f"the health check of {name} probes port {health.port}, which it does "
            f"not publish (its internal ports: {published}); a check probes a "
            "container port given in --port EXTERNAL:INTERNAL"
        )


def parse_replicas(text: str, what: str = "--replicas") -> int:
    """How many instances to run: a whole number from 1 to 64."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAXIMUM_INSTANCES:
        raise CLIError(
            f"bad {what} {text!r}: give a whole number of instances from 1 to "
            f"{MAXIMUM_INSTANCES}"
        )
    return int(text)


def parse_restart(text: str) -> RestartPolicy:
    """``--restart never|always|on-failure[:N]`` as a `RestartPolicy`."""
    if text in ("never", "always", "on-failure"):
        return RestartPolicy(name=text)
    policy, colon, count = text.partition(":")
    if policy == "on-failure" and colon and count.isdigit() and int(count) >= 1:
        return RestartPolicy(name="on-failure", maximum_retry_count=int(count))
    raise CLIError(
        f"bad --restart {text!r}: give never, always, on-failure or on-failure:N (N >= 1)"
    )


def parse_memory_limit(text: str) -> int | None:
    """``--memory-limit``: a size of at least 4M, or ``none``."""
    if text.lower() == "none":
        return None
    try:
        size = parse_size(text)
    except CLIError as e:
        if "at least" in e.message:
            size = 0
        elif "too large" in e.message:
            raise CLIError(f"bad --memory-limit {text!r}: too large") from None
        else:
            raise CLIError(
                f"bad --memory-limit {text!r}: give bytes or a number with K, M, G "
                "or T (e.g. 256M), or none"
            ) from None
    if size < _MINIMUM_MEMORY_LIMIT:
        raise CLIError(f"bad --memory-limit {text!r}: at least 4M")
    return size


def parse_cpu_shares(text: str) -> int | None:
    """``--cpu-shares``: an integer from 1 to 262144, or ``none``."""
    if text.lower() == "none":
        return None
    if not text.isdigit() or not 1 <= int(text) <= 262144:
        raise CLIError(f"bad --cpu-shares {text!r}: give a whole number from 1 to 262144, or none")
    return int(text)


def parse_command_line(text: str) -> tuple[str, ...]:
    """``--command``: a command line, split as a shell would (no expansion)."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise CLIError(f"bad --command {text!r}: {e}") from None
    if not words:
        raise CLIError("bad --command '': give the command to run (or --no-command)")
    return tuple(words)
