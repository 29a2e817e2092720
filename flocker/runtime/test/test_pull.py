"""Unit tests for the accounting of a Docker pull's progress (`PullTally`)."""

from __future__ import annotations

from typing import Any

import pytest

from .._interface import ImagePullFailed, PullProgress, RegistryCredentials
from .._pull import PullTally

IMAGE = "127.0.0.1:5000/flocker-test/app:1"


def test_layers_and_bytes_are_counted_as_the_engine_reports_them() -> None:
    """
    Layers count when first named and are done once pulled or already
    there; bytes follow the downloads' progress details.
    """
    tally = PullTally(IMAGE)
    events: list[dict[str, Any]] = [
        {"status": "Pulling from flocker-test/app", "id": "1"},
        {"status": "Pulling fs layer", "id": "a"},
        {"status": "Already exists", "id": "b"},
        {"status": "Downloading", "id": "a", "progressDetail": {"current": 10, "total": 40}},
    ]
    for event in events:
        tally.add(event)
    assert tally.progress == PullProgress(
        layers_done=1, layers_total=2, bytes_done=10, bytes_total=40
    )
    tally.add({"status": "Download complete", "id": "a"})
    tally.add({"status": "Pull complete", "id": "a"})
    tally.add({"status": "Status: Downloaded newer image for " + IMAGE})
    assert tally.progress == PullProgress(
        layers_done=2, layers_total=2, bytes_done=40, bytes_total=40
    )


def test_an_error_in_the_stream_fails_the_pull_with_its_message() -> None:
    """An ``error`` event ends the pull with the registry's message, on one line."""
    tally = PullTally(IMAGE)
    with pytest.raises(ImagePullFailed) as caught:
        tally.add(
            {
                "error": "short",
                "errorDetail": {"message": "unauthorized:\n authentication required"},
            }
        )
    assert caught.value.image == IMAGE
    assert caught.value.reason == "unauthorized: authentication required"


def test_credentials_hide_their_password() -> None:
    """Neither ``repr`` nor ``str`` of credentials shows the password."""
    credentials = RegistryCredentials(username="deploy", password="hunter2")
    assert "hunter2" not in repr(credentials) + str(credentials)
    assert "deploy" in repr(credentials)
