"""
Small checks shared by the file parsers: each takes the file's name and the
dotted path of the value (``applications.web.ports[0].external``) and raises
`ConfigurationError` naming both when the value is not what it should be.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fractions import Fraction
from typing import Any, NoReturn

import yaml

from ..apiclient import MAXIMUM_INSTANCES
from ._model import ConfigurationError

__all__ = [
    "CPU_SHARES_RANGE",
    "MEBIBYTE",
    "MINIMUM_MEMORY_LIMIT",
    "PORT_RANGE",
    "REPLICAS_RANGE",
    "SINGLE_INSTANCE",
    "child",
    "environment_name",
    "environment_value",
    "fail",
    "image",
    "integer",
    "keys",
    "load_yaml",
    "mapping",
    "mountpoint",
    "name",
    "sequence",
    "size",
    "string",
]

MEBIBYTE = 1024 * 1024

#: Application (container) names and link aliases, as the REST API takes them.
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")

#: ``1073741824``, ``512M``, ``1G``, ``1.5GiB``, ``64mb`` (binary multiples).
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def fail(source: str, path: str, message: str) -> NoReturn:
    """Raise `ConfigurationError` for ``path`` in the file ``source``."""
    where = f"{source}: {path}" if path else source
    raise ConfigurationError(f"{where}: {message}")


def child(path: str, key: Any) -> str:
    """The dotted path of ``key`` under ``path`` (``[i]`` for an index)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def load_yaml(source: str, text: str) -> Any:
    """Parse YAML, reporting a syntax error on one line with its position."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or "syntax error"
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        fail(source, "", f"not valid YAML: {problem}{at}")


def mapping(source: str, path: str, value: Any) -> dict[Any, Any]:
    """``value``, which must be a mapping."""
    if not isinstance(value, dict):
        fail(source, path, f"must be a mapping, not {_kind(value)}")
    return value


def keys(
    source: str,
    path: str,
    value: dict[Any, Any],
    allowed: Iterable[str],
    required: Iterable[str] = (),
    unsupported: str = "unknown key",
) -> None:
    """Refuse keys of ``value`` not in ``allowed``; require ``required``."""
    allowed = set(allowed)
    for key in value:
        if not isinstance(key, str):
            fail(source, child(path, str(key)), "keys must be strings")
    for key in sorted(value):
        if key not in allowed:
            fail(source, child(path, key), unsupported)
    for key in required:
        if key not in value:
            fail(source, child(path, key), "missing")


def sequence(source: str, path: str, value: Any) -> list[Any]:
    """``value``, which must be a list."""
    if not isinstance(value, list):
        fail(source, path, f"must be a list, not {_kind(value)}")
    return value


def string(source: str, path: str, value: Any) -> str:
    """``value``, which must be a non-empty string."""
    if not isinstance(value, str):
        fail(source, path, f"must be a string, not {_kind(value)}")
    if not value:
        fail(source, path, "must not be empty")
    return value


def name(source: str, path: str, value: Any) -> str:
    """An application name or link alias: letters, digits, ``_.-``, ≤ 128."""
    text = string(source, path, value)
    if not _NAME.match(text):
        fail(
            source,
            path,
            f"{text!r} is not a valid name (letters, digits, '_', '.', '-'; "
            "at most 128; starting with a letter or digit)",
        )
    return text


def integer(
    source: str, path: str, value: Any, minimum: int, maximum: int = 2**63 - 1
) -> int:
    """``value``, which must be an integer from ``minimum`` to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        fail(source, path, f"must be an integer, not {_kind(value)}")
    if not minimum <= value <= maximum:
        fail(source, path, f"{value} is not between {minimum} and {maximum}")
    return value


def size(source: str, path: str, value: Any, minimum: int) -> int:
    """
    A number of bytes: an integer, or a string such as ``"1G"``, ``"512MiB"``
    or ``"64m"`` (K, M, G and T are powers of 1024).
    """
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            fail(
                source,
                path,
                f"{value!r} is not a size (bytes, or a number with K, M, G or T)",
            )
        number, unit = match.groups()
        value = int(Fraction(number) * 1024 ** _POWERS[unit.lower()])
    return integer(source, path, value, minimum)


def _kind(value: Any) -> str:
    """How to name the type of a value found in YAML."""
    if value is None:
        return "nothing"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def environment_value(source: str, path: str, value: Any) -> str:
    """
    An environment variable's value: a string, or a number written as one.

    Booleans and nothing are refused: YAML reads ``yes``, ``off`` and an
    empty value as those, which is rarely what was meant (quote them).
    """
    if isinstance(value, bool) or value is None:
        fail(source, path, f"must be a string, not {_kind(value)} (quote it)")
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        fail(source, path, f"must be a string, not {_kind(value)}")
    return value


def environment_name(source: str, path: str, value: Any) -> str:
    """An environment variable's name: no ``=``, no NUL, at most 256 characters."""
    text = string(source, path, value)
    if "=" in text or "\0" in text or len(text) > 256:
        fail(source, path, f"{text!r} is not a valid environment variable name")
    return text


def image(source: str, path: str, value: Any) -> str:
    """A Docker image reference: no whitespace, at most 1024 characters."""
    text = string(source, path, value)
    if len(text) > 1024 or any(c.isspace() for c in text):
        fail(source, path, f"{text!r} is not a valid image name")
    return text


def mountpoint(source: str, path: str, value: Any) -> str:
    """An absolute path inside the container."""
    text = string(source, path, value)
    if not text.startswith("/") or "\0" in text or len(text) > 4096:
        fail(source, path, f"{text!r} is not an absolute path")
    return text


#: Limits the REST API puts on containers.
PORT_RANGE = (1, 65535)
CPU_SHARES_RANGE = (1, 262144)
MINIMUM_MEMORY_LIMIT = 4 * MEBIBYTE
#: How many instances of one application the REST API runs (``replicas``).
REPLICAS_RANGE = (1, MAXIMUM_INSTANCES)

#: Why an application with a volume has one instance (the control service's words).
SINGLE_INSTANCE = (
    "an application with volumes runs once: its data is on one node "
    "(replicas are for applications without volumes)"
)
