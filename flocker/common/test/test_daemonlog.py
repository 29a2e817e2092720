"""Unit tests for daemon logging: eliot JSON lines with Twisted bridged in."""

import io
import json
from pathlib import Path

from eliot import log_message
from twisted.logger import Logger
from twisted.python.failure import Failure

from flocker.common import start_daemon_logging


def test_file_and_stdout(tmp_path: Path) -> None:
    """Messages go as JSON lines to <log_dir>/<name>.log and to the stream."""
    stream = io.StringIO()
    stop = start_daemon_logging("flocker-x", str(tmp_path / "logs"), stream, False)
    try:
        log_message(message_type="flocker:test:hello", value=1)
    finally:
        stop()
    lines = (tmp_path / "logs" / "flocker-x.log").read_text().splitlines()
    [entry] = [
        e
        for e in map(json.loads, lines)
        if e.get("message_type") == "flocker:test:hello"
    ]
    assert entry["value"] == 1
    streamed = map(json.loads, stream.getvalue().splitlines())
    assert [e["value"] for e in streamed if "value" in e] == [1]


def test_twisted_events_bridged(tmp_path: Path) -> None:
    """Twisted log events and failures become eliot messages in the file."""
    stop = start_daemon_logging("flocker-y", str(tmp_path), None, False)
    log = Logger(namespace="flocker.test")
    try:
        log.info("connection from {peer}", peer="127.0.0.11")
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.failure("it broke", Failure())
    finally:
        stop()
    entries = [json.loads(line) for line in (tmp_path / "flocker-y.log").open()]
    [info] = [
        e for e in entries if e.get("message_type") == "flocker:common:twisted_log"
    ]
    assert info["message"] == "connection from 127.0.0.11"
    assert info["log_namespace"] == "flocker.test"
    assert any(
        e.get("reason", "").startswith("division")
        or "ZeroDivisionError" in e.get("exception", "")
        for e in entries
    )
