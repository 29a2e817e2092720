"""
The accounting of a Docker Engine's pull: `PullTally` turns the engine's
stream of pull events into `PullProgress`, and its errors into
`ImagePullFailed` with the registry's own message.
"""

from __future__ import annotations

from typing import Any

from ._interface import ImagePullFailed, PullProgress

__all__ = ["PullTally"]


#: Layer statuses of a Docker pull after which the layer is in the engine.
_LAYER_DONE = frozenset({"Pull complete", "Already exists"})
#: Statuses that name a layer of the image (as opposed to the whole pull).
_LAYER_STATUSES = frozenset(
    {
        "Pulling fs layer",
        "Waiting",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        *_LAYER_DONE,
    }
)


class PullTally:
    """
    The progress of one Docker pull, from the engine's stream of events.

    Each event is a JSON object; layer events carry the layer's ``id`` and
    a ``status`` (``Downloading`` with ``progressDetail`` ``current`` and
    ``total``, ``Pull complete``…).  An event with an ``error`` ends the
    pull: `add` raises `ImagePullFailed` with its message.
    """

    def __init__(self, image: str) -> None:
        """Nothing known yet of ``image``'s layers."""
        self.image = image
        self._sizes: dict[str, int] = {}
        self._done_bytes: dict[str, int] = {}
        self._layers: set[str] = set()
        self._finished: set[str] = set()

    def add(self, event: dict[str, Any]) -> None:
        """Account for one event of the stream."""
        if "error" in event:
            detail = event.get("errorDetail") or {}
            message = detail.get("message") if isinstance(detail, dict) else None
            raise ImagePullFailed(self.image, str(message or event["error"]))
        status, layer = event.get("status"), event.get("id")
        if status not in _LAYER_STATUSES or not isinstance(layer, str):
            return
        self._layers.add(layer)
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and isinstance(detail, dict):
            total, current = detail.get("total"), detail.get("current")
            if isinstance(total, int) and total > 0:
                self._sizes[layer] = total
            if isinstance(current, int):
                self._done_bytes[layer] = current
        elif status in ("Download complete", *_LAYER_DONE):
            self._done_bytes[layer] = self._sizes.get(layer, 0)
        if status in _LAYER_DONE:
            self._finished.add(layer)

    @property
    def progress(self) -> PullProgress:
        """The progress so far."""
        return PullProgress(
            layers_done=len(self._finished),
            layers_total=len(self._layers),
            bytes_done=sum(self._done_bytes.values()),
            bytes_total=sum(self._sizes.values()),
        )
