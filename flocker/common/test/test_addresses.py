"""Tests for reading ``HOST[:PORT]`` addresses (`flocker.common._addresses`)."""

import pytest

from flocker.common import check_port, format_address, parse_address


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("10.0.0.1", ("10.0.0.1", 4523)),
        ("10.0.0.1:4600", ("10.0.0.1", 4600)),
        ("control.example", ("control.example", 4523)),
        (" control.example:1 ", ("control.example", 1)),
        ("[fd00::1]:4600", ("fd00::1", 4600)),
        ("[fd00::1]", ("fd00::1", 4523)),
        ("fd00::1", ("fd00::1", 4523)),
    ],
)
def test_addresses_are_read(text: str, address: tuple[str, int]) -> None:
    """HOST, HOST:PORT, [V6] and [V6]:PORT are read; a bare IPv6 address is a host."""
    assert parse_address(text, 4523) == address


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "names no host"),
        (":4600", "names no host"),
        ("h:", "is not a TCP port"),
        ("h:http", "is not a TCP port"),
        ("h:0", "is not a TCP port"),
        ("h:65536", "is not a TCP port"),
        ("h:-1", "is not a TCP port"),
        ("[fd00::1", "needs its ']'"),
        ("[]:1", "needs its ']'"),
        ("[fd00::1]4600", "expected ':PORT'"),
    ],
)
def test_bad_addresses_are_refused(text: str, says: str) -> None:
    """Each malformed address is refused with a one-line message saying why."""
    with pytest.raises(ValueError, match=says.replace("[", r"\[")) as info:
        parse_address(text, 4523)
    assert "\n" not in str(info.value)


def test_addresses_are_written_back() -> None:
    """An address is written HOST:PORT, an IPv6 one in brackets."""
    assert format_address("10.0.0.1", 1) == "10.0.0.1:1"
    assert format_address("fd00::1", 2) == "[fd00::1]:2"


@pytest.mark.parametrize("port", [0, 65536, True, "80", 1.5])
def test_check_port_refuses_non_ports(port: object) -> None:
    """Only integers 1-65535 are ports (not booleans, strings or floats)."""
    with pytest.raises(ValueError, match="is not a TCP port"):
        check_port(port)
