"""Tests for sizes, tables and JSON output (`flocker.cli._format`)."""

import json
from io import StringIO

import pytest

from flocker.cli._errors import EXIT_ERROR, CLIError
from flocker.cli._format import format_size, parse_size, table, write_json


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1073741824", 2**30),
        ("1G", 2**30),
        ("1g", 2**30),
        ("1GiB", 2**30),
        ("1GB", 2**30),
        ("512M", 512 * 2**20),
        ("1.5G", 3 * 2**29),
        ("2048K", 2 * 2**20),
        ("1T", 2**40),
        (" 64M ", 64 * 2**20),
        ("1M", 2**20),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    """Sizes are bytes or a number with a binary unit."""
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    ["", "G", "1X", "-1G", "1 G B", "ten", "1e9", "0", "1023K", "100", "9999999P"],
)
def test_parse_size_refuses(text: str) -> None:
    """Anything else, or a size outside 1M..2^63-1, is bad input (exit 1)."""
    with pytest.raises(CLIError) as info:
        parse_size(text)
    assert info.value.code == EXIT_ERROR
    assert "bad size" in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (None, "-"),
        (2**30, "1G"),
        (512 * 2**20, "512M"),
        (3 * 2**29, "1.5G"),
        (100, "100B"),
        (2**40, "1T"),
    ],
)
def test_format_size(size: int | None, text: str) -> None:
    """Sizes are shown in the largest unit, whole when exact; no limit is ``-``."""
    assert format_size(size) == text


def test_parse_format_round_trip() -> None:
    """A formatted whole size parses back to the same bytes."""
    for size in (2**20, 3 * 2**30, 7 * 2**40):
        assert parse_size(format_size(size)) == size


def test_table_aligns_columns() -> None:
    """Columns are padded to their widest cell; ``None`` shows as ``-``."""
    out = StringIO()
    table(out, ["A", "LONGER"], [["xyz", None], ["q", "v"]])
    assert out.getvalue() == "A    LONGER\nxyz  -\nq    v\n"


def test_table_empty() -> None:
    """A table without rows is just its header."""
    out = StringIO()
    table(out, ["NAME", "NODE"], [])
    assert out.getvalue() == "NAME  NODE\n"


def test_write_json_is_stable() -> None:
    """JSON output has sorted keys, so equal values print the same."""
    one, two = StringIO(), StringIO()
    write_json(one, {"b": 1, "a": [1, {"d": 2, "c": 3}]})
    write_json(two, {"a": [1, {"c": 3, "d": 2}], "b": 1})
    assert one.getvalue() == two.getvalue()
    assert json.loads(one.getvalue()) == {"a": [1, {"c": 3, "d": 2}], "b": 1}
