"""
Values both ends of a transfer share: progress, outcomes, log fields.

See :mod:`flocker.volume.transfer`.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from eliot import Field
from pyrsistent import PClass, field

from ._transfer_wire import TransferError

PEER = Field.for_types("peer", [str, type(None)], "The other end of a transfer.")
RESULT = Field.for_types("result", [str], "How a transfer ended: ok or a code.")


class DestinationUnreachable(TransferError):
    """The receiver could not be connected to; nothing was sent."""


# --------------------------------------------------------------------------
# Progress and outcomes


@attrs.define
class TransferProgress:
    """
    A transfer in flight, as one end sees it; updated as bytes pass.

    :ivar bytes_transferred: Stream bytes sent (or received) so far.
    :ivar size: The stream's size if the sender knew it, else ``None``.
    """

    dataset_id: str
    snapshot: str
    base: str | None
    size: int | None = None
    bytes_transferred: int = 0


ProgressCallback = Callable[[TransferProgress], None]


class ReceiveOutcome(PClass):
    """
    How one incoming transfer ended, as the receiver saw it.

    :ivar ok: The snapshot was received, verified and made visible.
    :ivar code: The error code if not ``ok`` (``interrupted`` when the
        connection ended early), else ``None``.
    :ivar message: A sentence about the error, else ``None``.
    :ivar peer: The sending node's UUID, if it got that far.
    """

    dataset_id = field(type=(str, type(None)), mandatory=True, initial=None)
    snapshot = field(type=(str, type(None)), mandatory=True, initial=None)
    base = field(type=(str, type(None)), mandatory=True, initial=None)
    bytes_received = field(type=int, mandatory=True, initial=0)
    ok = field(type=bool, mandatory=True)
    code = field(type=(str, type(None)), mandatory=True, initial=None)
    message = field(type=(str, type(None)), mandatory=True, initial=None)
    peer = field(type=(str, type(None)), mandatory=True, initial=None)


INTERRUPTED = "interrupted"
