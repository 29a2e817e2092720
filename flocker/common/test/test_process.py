"""Tests for ``flocker.common.run_command`` against real child processes."""

from pathlib import Path

import pytest
import pytest_twisted
from eliot import MemoryLogger
from eliot.testing import LoggedAction
from twisted.internet import reactor

from flocker.common import CommandFailed, CommandTimedOut, run_command
from flocker.common._logging import RUN_COMMAND

pytestmark = pytest.mark.functional


@pytest_twisted.ensureDeferred
async def test_output_and_exit_code() -> None:
    """A successful command's standard output and error are returned."""
    result = await run_command(reactor, ["sh", "-c", "echo out; echo err >&2"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"out\n", b"err\n")
    assert result.argv == ("sh", "-c", "echo out; echo err >&2")


@pytest_twisted.ensureDeferred
async def test_stdin() -> None:
    """Bytes given as ``stdin`` reach the command."""
    result = await run_command(reactor, ["cat"], stdin=b"flocker\x00data")
    assert result.stdout == b"flocker\x00data"


@pytest_twisted.ensureDeferred
async def test_failure_carries_command_and_stderr() -> None:
    """A non-zero exit raises CommandFailed with argv, status and stderr."""
    with pytest.raises(CommandFailed) as info:
        await run_command(reactor, ["sh", "-c", "echo oops >&2; exit 3"])
    error = info.value
    assert (error.exit_code, error.stderr) == (3, b"oops\n")
    assert error.argv[0] == "sh"
    assert "exited with status 3: oops" in str(error)


@pytest_twisted.ensureDeferred
async def test_unchecked_failure_is_returned() -> None:
    """With ``check=False`` a non-zero exit is a result, not an error."""
    result = await run_command(reactor, ["sh", "-c", "exit 4"], check=False)
    assert result.exit_code == 4


@pytest_twisted.ensureDeferred
async def test_missing_command() -> None:
    """A command that is not installed fails with status 127."""
    with pytest.raises(CommandFailed) as info:
        await run_command(reactor, ["flocker-no-such-command"])
    assert info.value.exit_code == 127
    assert "command not found" in str(info.value)


@pytest_twisted.ensureDeferred
async def test_timeout_kills() -> None:
    """A command running past its timeout is killed and CommandTimedOut raised."""
    with pytest.raises(CommandTimedOut) as info:
        await run_command(reactor, ["sleep", "30"], timeout=0.2)
    assert "timed out after 0.2 seconds" in str(info.value)


@pytest_twisted.ensureDeferred
async def test_environment_and_directory(tmp_path: Path) -> None:
    """``env`` and ``path`` set the child's environment and directory."""
    result = await run_command(
        reactor,
        ["sh", "-c", 'echo "$FLOCKER_X $(pwd)"'],
        env={"FLOCKER_X": "yes", "PATH": "/usr/bin:/bin"},
        path=str(tmp_path),
    )
    assert result.stdout.decode().split() == ["yes", str(tmp_path)]


@pytest_twisted.ensureDeferred
async def test_logged_as_action(eliot_logger: MemoryLogger) -> None:
    """Each run is a flocker:common:run_command action with argv and status."""
    await run_command(reactor, ["true"])
    [action] = LoggedAction.of_type(eliot_logger.messages, RUN_COMMAND)
    assert action.start_message["argv"] == ["true"]
    assert action.end_message["exit_code"] == 0
    assert action.succeeded
