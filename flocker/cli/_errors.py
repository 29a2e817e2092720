"""
The ``flocker`` tool's exit codes, and how failures become one line each.

Every failure the tool reports is a `CLIError`: a one-line message and the
exit code that says what kind of failure it is.  `describe` turns what the
REST API client, Twisted or the certificate loader raise into one.
"""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)

from ..apiclient import FlockerAPIError, TLSHandshakeFailed
from ..ca import CertificateError, PeerRejected

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "EXIT_CODES_HELP",
    "CLIError",
    "describe",
]

#: Success.
EXIT_OK = 0
#: The cluster refused the request, or the input is wrong (unknown dataset,
#: bad size, ambiguous name…).
EXIT_ERROR = 1
#: The command line is malformed (unknown command or option, missing
#: argument), or names no cluster.
EXIT_USAGE = 2
#: The control service cannot be reached, or TLS or the certificates (or the
#: cluster file naming them) are unusable.
EXIT_UNREACHABLE = 3
#: A ``--wait`` ran out of time; the change itself was made.
EXIT_TIMEOUT = 4

#: Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: The exit codes, for ``flocker --help``.
EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK}  success
  {EXIT_ERROR}  the cluster refused the request, or bad input (unknown dataset or
     node, bad size, ambiguous name...); nothing was changed
  {EXIT_USAGE}  usage error (unknown command or option, missing argument, no cluster)
  {EXIT_UNREACHABLE}  the control service cannot be reached, or a TLS, certificate or
     cluster file problem
  {EXIT_TIMEOUT}  a --wait timed out (the change was made and may still complete)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)

Every error is reported as one line on stderr: "flocker: error: ..."."""


class CLIError(Exception):
    """
    A failure to report on one line, and the exit code it means.

    :ivar message: what went wrong, one line, without the ``flocker: error:``
        prefix.
    :ivar code: the exit code.
    """

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        """Remember the message and the code."""
        super().__init__(message, code)
        self.message = " ".join(message.split())
        self.code = code

    def __str__(self) -> str:
        """The message."""
        return self.message


def _reason(error: BaseException) -> str:
    """The most telling one-line text for a connection or TLS failure."""
    if isinstance(
        error, ResponseNeverReceived | ResponseFailed | RequestTransmissionFailed
    ):
        reasons = [
            r.value
            for r in error.reasons
            if isinstance(r, Failure) and r.value is not None
        ]
        return _reason(reasons[0]) if reasons else "the connection was lost"
    if isinstance(error, CancelledError | TwistedTimeoutError):
        return "it did not answer in time"
    if isinstance(error, TLSHandshakeFailed):
        reason = _reason(error.reason)
        return reason if reason.startswith("TLS") else f"TLS handshake failed: {reason}"
    if isinstance(error, SSL.Error):
        return f"TLS handshake failed: {_openssl_text(error)}"
    if isinstance(error, PeerRejected):
        return "TLS handshake failed: " + str(error).split(": VerificationError")[0]
    return str(error).strip().rstrip(".") or type(error).__name__


def _openssl_text(error: SSL.Error) -> str:
    """The reasons in a pyOpenSSL error, e.g. ``certificate verify failed``."""
    items = error.args[0] if error.args and isinstance(error.args[0], list) else []
    reasons = [str(item[-1]) for item in items if isinstance(item, tuple) and item]
    return ", ".join(reasons) or str(error) or "no reason given"


def describe(error: BaseException, api_url: str = "") -> CLIError:
    """
    The `CLIError` reporting ``error``.

    :param api_url: the control service's URL, to say what could not be
        reached.
    """
    where = f" at {api_url}" if api_url else ""
    if isinstance(error, CLIError):
        return error
    if isinstance(error, FlockerAPIError):
        return CLIError(
            f"the control service refused the request: {error.description or error}",
            EXIT_ERROR,
        )
    if isinstance(error, CertificateError):
        return CLIError(str(error), EXIT_UNREACHABLE)
    if isinstance(error, CancelledError | TwistedTimeoutError):
        return CLIError(
            f"the control service{where} did not answer in time", EXIT_UNREACHABLE
        )
    if isinstance(
        error,
        ConnectError
        | ResponseNeverReceived
        | ResponseFailed
        | RequestTransmissionFailed,
    ):
        return CLIError(
            f"cannot reach the control service{where}: {_reason(error)}",
            EXIT_UNREACHABLE,
        )
    if isinstance(error, BrokenPipeError):
        return CLIError("the output was closed", EXIT_ERROR)
    if isinstance(error, OSError):
        return CLIError(
            f"cannot reach the control service{where}: {error}", EXIT_UNREACHABLE
        )
    return CLIError(
        f"unexpected {type(error).__name__}: {error}".rstrip(": "), EXIT_ERROR
    )
