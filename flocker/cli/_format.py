"""
Sizes, tables and JSON: what the ``flocker`` tool reads and prints.

Sizes are read as bytes (``1073741824``) or with a binary unit (``512M``,
``1G``, ``1.5GiB``: K, M, G, T are powers of 1024), and shown the same way.
Tables are aligned columns with a header; ``--json`` output is one JSON
document with sorted keys, for scripts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TextIO

from ._errors import EXIT_ERROR, CLIError

__all__ = [
    "MINIMUM_SIZE",
    "format_duration",
    "format_size",
    "parse_size",
    "table",
    "write_json",
]

#: The smallest dataset size the REST API accepts.
MINIMUM_SIZE = 1024 * 1024

#: The largest dataset size the REST API accepts.
MAXIMUM_SIZE = 2**63 - 1

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """
    The number of bytes ``text`` names: ``1073741824``, ``512M``, ``1G``…

    :raise CLIError: if it is not a size, or is outside what a dataset may
        have (1 MiB to 2^63-1 bytes).
    """
    match = _SIZE.match(text)
    if match is None:
        raise CLIError(
            f"bad size {text!r}: give bytes or a number with K, M, G or T "
            "(e.g. 512M, 1G)",
            EXIT_ERROR,
        )
    number, unit = match.groups()
    multiplier = _UNITS[unit.upper()]
    size: int
    if "." in number:
        whole, fraction = number.split(".")
        size = int(whole) * multiplier + int(fraction) * multiplier // 10 ** len(
            fraction
        )
    else:
        size = int(number) * multiplier
    if size < MINIMUM_SIZE:
        raise CLIError(f"bad size {text!r}: a dataset needs at least 1M", EXIT_ERROR)
    if size > MAXIMUM_SIZE:
        raise CLIError(f"bad size {text!r}: too large", EXIT_ERROR)
    return size


def format_size(size: int | None) -> str:
    """A size for people: ``1G``, ``512M``, ``1.5G``; ``-`` for no limit."""
    if size is None:
        return "-"
    for unit in ("P", "T", "G", "M", "K"):
        multiplier = _UNITS[unit]
        if size >= multiplier:
            value = size / multiplier
            if size % multiplier == 0:
                return f"{size // multiplier}{unit}"
            return f"{value:.1f}{unit}"
    return f"{size}B"


def format_duration(seconds: float) -> str:
    """A duration for people: ``1.2s``, ``4m05s``, ``3h20m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """
    Print rows under a header, columns left-aligned and two spaces apart.

    ``None`` shows as ``-``.  The last column is not padded.
    """
    cells = [list(headers)] + [
        ["-" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        line = "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        )
        out.write(line.rstrip() + "\n")


def write_json(out: TextIO, value: Any) -> None:
    """Print ``value`` as indented JSON with sorted keys."""
    out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
