"""
Health checks in application files: Flocker's ``health:`` and the
``healthcheck:`` of a docker-compose service, both read as a
`flocker.apiclient.HealthCheck`.

Flocker's format::

    health:
      http: {port: 80, path: /healthz}     # or: tcp: {port: 5432}
      interval: 5                          # seconds, or "5s", "1m30s", "500ms"
      timeout: 2
      retries: 3
      start_period: 30

Compose's ``healthcheck`` runs a command inside the container; Flocker
probes the container from its node instead, so only the commands that say
"this port answers" map:

* ``["CMD", "curl", "-f", "http://localhost:PORT/PATH"]`` (also ``-fsS``,
  ``--fail``, ``-L``…) and ``wget -q --spider http://localhost:PORT/PATH``:
  an HTTP check of ``GET /PATH`` on PORT (80 if the URL has none);
* ``nc -z localhost PORT``: a TCP check of PORT;
* the same as one shell command, ``["CMD-SHELL", "curl -f
  http://localhost:PORT/PATH || exit 1"]`` or a plain string;
* ``["NONE"]`` or ``disable: true``: no check.

``interval``, ``timeout`` and ``start_period`` are compose durations
(``"30s"``, ``"1m30s"``, ``"500ms"``), ``retries`` an integer.  Timings not
given are Flocker's defaults (every 5 s, 2 s timeout, 3 retries, 30 s
start period), not Docker's.  Any other test is refused, naming the
service and the forms that map.

Either way the port must be one the application publishes (an internal
port of its ``ports``): the check probes the container through it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ..apiclient import ContainerPort, HealthCheck
from ._checks import PORT_RANGE, child, fail, integer, keys, mapping, string

__all__ = [
    "compose_health",
    "duration",
    "flocker_health",
    "published_health",
]

#: The longest interval, timeout or start period: a day.
_MAXIMUM_SECONDS = 86400

#: One term of a compose duration: a number and its unit.
_DURATION_TERM = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "µs": Fraction(1, 10**6),
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}

#: The hosts a compose health check may name: the container itself.
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

#: Short curl options allowed together (-f is required).
_CURL_SHORT = re.compile(r"^-[fsSL]+$")
_CURL_LONG = ("--fail", "--silent", "--show-error", "--location")

_WGET_FLAGS = ("-q", "--quiet", "--spider", "-nv", "--no-verbose", "-O-", "-qO-")
_WGET_OUTPUT = ("-O", "-qO")

_MAPPED_FORMS = (
    'these map: ["CMD", "curl", "-f", "http://localhost:PORT/PATH"], '
    '["CMD-SHELL", "curl -f http://localhost:PORT/PATH || exit 1"], '
    "wget -q --spider http://localhost:PORT/PATH, nc -z localhost PORT, "
    'and ["NONE"] or disable: true for no check'
)


def duration(source: str, path: str, value: Any, zero: bool = False) -> float:
    """
    A compose duration (``"30s"``, ``"1m30s"``, ``"1.5h"``, ``"500ms"``) in
    seconds: more than 0 (or at least 0) and at most a day.
    """
    text = string(source, path, value)
    terms = list(_DURATION_TERM.finditer(text))
    if not terms or "".join(t.group(0) for t in terms) != text:
        fail(
            source,
            path,
            f"{text!r} is not a duration (e.g. 30s, 1m30s, 500ms; units h, m, s, ms, us)",
        )
    seconds = sum((Fraction(t.group(1)) * _UNITS[t.group(2)] for t in terms), Fraction(0))
    return _bounded(source, path, seconds, zero)


def _bounded(source: str, path: str, seconds: Fraction | float, zero: bool) -> float:
    if seconds < 0 or (seconds == 0 and not zero) or seconds > _MAXIMUM_SECONDS:
        low = "0 or more" if zero else "more than 0"
        fail(source, path, f"must be {low} and at most {_MAXIMUM_SECONDS} seconds")
    return float(seconds)


def _seconds(source: str, path: str, value: Any, zero: bool = False) -> float:
    """Seconds in Flocker's format: a number, or a duration string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value:  # NaN
            fail(source, path, "must be a number of seconds")
        return _bounded(source, path, Fraction(value), zero)
    if isinstance(value, str):
        return duration(source, path, value, zero)
    kind = "a boolean" if isinstance(value, bool) else f"a {type(value).__name__}"
    fail(source, path, f"must be a number of seconds or a duration such as 30s, not {kind}")


def published_health(
    source: str, path: str, health: HealthCheck | None, ports: Sequence[ContainerPort]
) -> HealthCheck | None:
    """``health``, refused unless it probes one of ``ports``' internal ports."""
    if health is None:
        return None
    internal = sorted({p.internal for p in ports})
    if health.port not in internal:
        published = ", ".join(map(str, internal)) or "none"
        fail(
            source,
            path,
            f"port {health.port} is not one the application publishes (its internal "
            f"ports: {published}); a health check probes a container port of its ports",
        )
    return health


# --------------------------------------------------------------------------
# Flocker's format


def flocker_health(source: str, path: str, value: Any) -> tuple[HealthCheck | None, str]:
    """
    The ``health`` field of Flocker's format, and the path of its port
    (to name when the port is not published).
    """
    if value is None:
        return None, path
    value = mapping(source, path, value)
    keys(source, path, value, ("http", "tcp", "interval", "timeout", "retries", "start_period"))
    kinds = [k for k in ("http", "tcp") if k in value]
    if len(kinds) != 1:
        fail(
            source,
            path,
            "give one of http: {port: PORT, path: /PATH} or tcp: {port: PORT}"
            if not kinds
            else "give only one of http and tcp",
        )
    kind = kinds[0]
    where = child(path, kind)
    probe = mapping(source, where, value[kind])
    required = ("port", "path") if kind == "http" else ("port",)
    keys(source, where, probe, required, required)
    port = integer(source, child(where, "port"), probe["port"], *PORT_RANGE)
    url_path = None
    if kind == "http":
        url_path = _url_path(source, child(where, "path"), probe["path"])
    timings: dict[str, Any] = {}
    for name in ("interval", "timeout", "start_period"):
        if value.get(name) is not None:
            timings[name] = _seconds(
                source, child(path, name), value[name], zero=name == "start_period"
            )
    if value.get("retries") is not None:
        timings["retries"] = integer(source, child(path, "retries"), value["retries"], 1, 1000)
    check = HealthCheck(kind=kind, port=port, path=url_path, **timings)
    return check, child(where, "port")


def _url_path(source: str, path: str, value: Any) -> str:
    text = string(source, path, value)
    if not text.startswith("/") or any(c.isspace() or ord(c) < 32 for c in text):
        fail(source, path, f"{text!r} is not a path starting with / (without spaces)")
    if len(text) > 2048:
        fail(source, path, "is longer than 2048 characters")
    return text


# --------------------------------------------------------------------------
# docker-compose


def compose_health(source: str, path: str, value: Any) -> HealthCheck | None:
    """The ``healthcheck`` of a compose service (port not checked yet)."""
    if value is None:
        return None
    value = mapping(source, path, value)
    if "start_interval" in value:
        fail(source, child(path, "start_interval"), "is not supported by flocker-deploy")
    keys(
        source,
        path,
        value,
        ("test", "interval", "timeout", "retries", "start_period", "disable"),
    )
    disable = value.get("disable", False)
    if not isinstance(disable, bool):
        fail(source, child(path, "disable"), "must be true or false")
    if disable:
        return None
    if "test" not in value:
        fail(
            source,
            child(path, "test"),
            "missing (flocker-deploy does not know the image's own HEALTHCHECK; "
            "give the test, or disable: true)",
        )
    check = _compose_test(source, child(path, "test"), value["test"])
    if check is None:
        return None
    timings: dict[str, Any] = {}
    for name in ("interval", "timeout", "start_period"):
        if value.get(name) is not None:
            timings[name] = duration(
                source, child(path, name), value[name], zero=name == "start_period"
            )
    if value.get("retries") is not None:
        timings["retries"] = integer(source, child(path, "retries"), value["retries"], 1, 1000)
    return check.set(**timings)


def _unmapped(source: str, path: str, test: Any) -> NoReturn:
    fail(source, path, f"{test!r} does not map to a Flocker health check; {_MAPPED_FORMS}")


def _compose_test(source: str, path: str, test: Any) -> HealthCheck | None:
    """A compose ``test`` as a check (``None``: ``NONE``), or refused."""
    if isinstance(test, str):
        return _shell(source, path, test, test)
    if not isinstance(test, list) or not test or not all(isinstance(t, str) for t in test):
        return _unmapped(source, path, test)
    form, *argv = test
    if form == "NONE" and not argv:
        return None
    if form == "CMD" and argv:
        return _command(source, path, test, argv)
    if form == "CMD-SHELL" and len(argv) == 1:
        return _shell(source, path, test, argv[0])
    return _unmapped(source, path, test)


def _shell(source: str, path: str, test: Any, command: str) -> HealthCheck:
    """A shell command: one mapped command, optionally followed by ``|| exit 1``."""
    try:
        words = shlex.split(command)
    except ValueError:
        return _unmapped(source, path, test)
    if words[-3:] == ["||", "exit", "1"]:
        words = words[:-3]
    if any(w in ("||", "&&", "|", ";", "&") or w.startswith(("$", "`")) for w in words):
        return _unmapped(source, path, test)
    return _command(source, path, test, words)


def _command(source: str, path: str, test: Any, argv: Sequence[str]) -> HealthCheck:
    """A command's words as a check, or refused."""
    if not argv:
        return _unmapped(source, path, test)
    program, arguments = argv[0].rsplit("/", 1)[-1], list(argv[1:])
    check: HealthCheck | None = None
    if program == "curl":
        check = _curl(arguments)
    elif program == "wget":
        check = _wget(arguments)
    elif program in ("nc", "ncat", "netcat"):
        check = _nc(arguments)
    if check is None:
        return _unmapped(source, path, test)
    return check


def _curl(arguments: list[str]) -> HealthCheck | None:
    """``curl -f URL`` (with -s, -S, -L and their long forms) as an HTTP check."""
    flags = [a for a in arguments if a.startswith("-")]
    urls = [a for a in arguments if not a.startswith("-")]
    fails = False
    for flag in flags:
        if _CURL_SHORT.match(flag):
            fails = fails or "f" in flag
        elif flag in _CURL_LONG:
            fails = fails or flag == "--fail"
        else:
            return None
    if not fails or len(urls) != 1:
        return None
    return _http(urls[0])


def _wget(arguments: list[str]) -> HealthCheck | None:
    """``wget -q --spider URL`` (or ``-O /dev/null``, ``-O-``) as an HTTP check."""
    urls = []
    words = iter(arguments)
    for word in words:
        if word in _WGET_OUTPUT:
            if next(words, None) not in ("-", "/dev/null"):
                return None
        elif word.startswith("-"):
            if word not in _WGET_FLAGS:
                return None
        else:
            urls.append(word)
    if len(urls) != 1:
        return None
    return _http(urls[0])


def _nc(arguments: list[str]) -> HealthCheck | None:
    """``nc -z localhost PORT`` (with -v, -w N) as a TCP check."""
    rest = []
    scanning = False
    words = iter(arguments)
    for word in words:
        if word == "-w":
            if not (next(words, "") or "x").isdigit():
                return None
        elif word in ("-z", "-zv", "-vz"):
            scanning = True
        elif word == "-v":
            continue
        else:
            rest.append(word)
    if not scanning or len(rest) != 2 or rest[0] not in _LOCAL_HOSTS:
        return None
    port = _port(rest[1])
    return None if port is None else HealthCheck(kind="tcp", port=port)


def _port(text: str) -> int | None:
    if not text.isdigit() or not PORT_RANGE[0] <= int(text) <= PORT_RANGE[1]:
        return None
    return int(text)


def _http(url: str) -> HealthCheck | None:
    """``http://localhost[:PORT][/PATH]`` as an HTTP check of ``GET /PATH`` on PORT."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "http" or parts.hostname not in _LOCAL_HOSTS or parts.username:
        return None
    if port is not None and not PORT_RANGE[0] <= port <= PORT_RANGE[1]:
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(c.isspace() for c in path):
        return None
    return HealthCheck(kind="http", port=80 if port is None else port, path=path)
