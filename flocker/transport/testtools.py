"""
Test helpers for transports and their users: a producer that records what
its consumer asked of it.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class RecordingProducer:
    """A push producer that records what its consumer asked of it."""

    def __init__(self) -> None:
        """Nothing asked yet."""
        self.calls: list[str] = []

    def pauseProducing(self) -> None:  # noqa: N802
        """Note a pause."""
        self.calls.append("pause")

    def resumeProducing(self) -> None:  # noqa: N802
        """Note a resume."""
        self.calls.append("resume")

    def stopProducing(self) -> None:  # noqa: N802
        """Note a stop."""
        self.calls.append("stop")
