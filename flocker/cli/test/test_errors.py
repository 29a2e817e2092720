"""Tests for how failures become one-line errors and exit codes (`flocker.cli._errors`)."""

import pytest
from OpenSSL import SSL
from twisted.internet.defer import CancelledError
from twisted.internet.error import (
    ConnectionDone,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from flocker.apiclient import BadRequest, TLSHandshakeFailed, UnknownDataset
from flocker.ca import CertificateError, PeerRejected
from flocker.cli._errors import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CLIError,
    describe,
)

URL = "https://10.0.0.1:4523"


def failure(error: BaseException) -> Failure:
    """A Failure wrapping ``error``."""
    try:
        raise error
    except Exception:
        return Failure()


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (
            UnknownDataset(404, "unknown dataset x"),
            EXIT_ERROR,
            "refused the request: unknown dataset x",
        ),
        (BadRequest(400, "bad"), EXIT_ERROR, "refused the request: bad"),
        (
            CertificateError("key file /k does not exist"),
            EXIT_UNREACHABLE,
            "key file /k does not exist",
        ),
        (
            ConnectionRefusedError("Connection refused"),
            EXIT_UNREACHABLE,
            f"cannot reach the control service at {URL}: Connection was refused",
        ),
        (DNSLookupError("no such host"), EXIT_UNREACHABLE, "DNS lookup failed"),
        (CancelledError(), EXIT_UNREACHABLE, "did not answer in time"),
        (
            ResponseNeverReceived(
                [
                    failure(
                        SSL.Error([("SSL routines", "", "certificate verify failed")])
                    )
                ]
            ),
            EXIT_UNREACHABLE,
            "TLS handshake failed: certificate verify failed",
        ),
        (
            ResponseNeverReceived(
                [
                    failure(
                        PeerRejected(
                            "The peer's certificate is not for h: VerificationError(errors=[...])"
                        )
                    )
                ]
            ),
            EXIT_UNREACHABLE,
            "TLS handshake failed: The peer's certificate is not for h",
        ),
        (
            TLSHandshakeFailed(
                SSL.Error([("SSL routines", "", "certificate verify failed")])
            ),
            EXIT_UNREACHABLE,
            f"cannot reach the control service at {URL}: TLS handshake failed: "
            "certificate verify failed",
        ),
        (
            TLSHandshakeFailed(ConnectionDone("Connection was closed cleanly.")),
            EXIT_UNREACHABLE,
            "TLS handshake failed: Connection was closed cleanly",
        ),
        (
            TwistedTimeoutError(string="TLS handshake not done within 2 s"),
            EXIT_UNREACHABLE,
            "did not answer in time",
        ),
        (ResponseFailed([]), EXIT_UNREACHABLE, "the connection was lost"),
        (
            ResponseNeverReceived([failure(CancelledError())]),
            EXIT_UNREACHABLE,
            "it did not answer in time",
        ),
        (OSError(5, "I/O error"), EXIT_UNREACHABLE, "I/O error"),
        (BrokenPipeError(32, "Broken pipe"), EXIT_ERROR, "the output was closed"),
        (CLIError("timed out", EXIT_TIMEOUT), EXIT_TIMEOUT, "timed out"),
        (ValueError("strange"), EXIT_ERROR, "unexpected ValueError: strange"),
    ],
)
def test_describe(error: BaseException, code: int, says: str) -> None:
    """Each kind of failure is one line with the exit code for its kind."""
    described = describe(error, URL)
    assert described.code == code
    assert says in described.message
    assert "\n" not in described.message
    if "VerificationError" in str(
        error.reasons[0].value if hasattr(error, "reasons") and error.reasons else ""
    ):
        assert "VerificationError" not in described.message


def test_message_is_one_line() -> None:
    """A CLIError's message has its line breaks folded."""
    assert CLIError("one\n  two").message == "one two"


def test_exit_codes_help() -> None:
    """The --help epilog documents every exit code."""
    for code in (0, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_TIMEOUT):
        assert f"\n  {code}  " in EXIT_CODES_HELP
