"""Tests for reading the REST API's JSON into the client's values."""

from __future__ import annotations

from uuid import UUID

from flocker.apiclient import ImagePullState
from flocker.apiclient._json import node_from_json

NODE = "11111111-1111-4111-8111-111111111111"


def test_a_node_in_the_original_shape_has_no_pulls() -> None:
    """A node entry of the original API (uuid and host) reads with defaults."""
    node = node_from_json({"uuid": NODE, "host": "10.0.0.1"})
    assert (node.uuid, node.host, dict(node.image_pulls)) == (UUID(NODE), "10.0.0.1", {})


def test_image_pulls_are_read_by_application() -> None:
    """A node's ``image_pulls`` are read by application name."""
    node = node_from_json(
        {
            "uuid": NODE,
            "image_pulls": [
                {
                    "application": "web",
                    "image": "127.0.0.1:5000/web:2",
                    "pulling": False,
                    "reason": "manifest unknown",
                    "attempts": 3,
                    "since": 1.0,
                    "layers_done": 0,
                    "layers_total": 0,
                    "bytes_done": 0,
                    "bytes_total": 0,
                }
            ],
        }
    )
    assert dict(node.image_pulls) == {
        "web": ImagePullState(
            application="web",
            image="127.0.0.1:5000/web:2",
            pulling=False,
            reason="manifest unknown",
            attempts=3,
        )
    }
