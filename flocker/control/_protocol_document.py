"""
The document the control service pushes its agents, built incrementally.

Every change to the configuration or to any node's state makes a new
``{"configuration": ..., "state": ...}`` document, which is then diffed
against what each agent acknowledged.  With a thousand nodes, encoding every
node again and walking every node's JSON for each change costs the control
service a full pass over the cluster per report.  `DocumentEncoder` keeps the
JSON of each node (configured and reported) and reuses it while the node's
value is the very same object (pyrsistent values are replaced, never changed,
so identity means "unchanged"); `flocker.control._protocol_diff` skips
subtrees that are the same object, so a diff costs what changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from ._model import Deployment, Node
from ._serialization import deployment_to_json, node_state_to_json, node_to_json
from ._state import DeploymentState, NodeState

__all__ = ["DocumentEncoder"]

_V = TypeVar("_V")


@attrs.define
class _Reused(Generic[_V]):
    """The JSON of keyed values, kept while each value stays the same object."""

    encode: Callable[[_V], dict[str, Any]]
    _known: dict[str, tuple[_V, dict[str, Any]]] = attrs.field(factory=dict)

    def encode_all(self, values: Mapping[str, _V]) -> dict[str, Any]:
        """Key → JSON for every value, encoding only new or replaced ones."""
        known, self._known = self._known, {}
        result = {}
        for key, value in values.items():
            hit = known.get(key)
            if hit is None or hit[0] is not value:
                hit = (value, self.encode(value))
            self._known[key] = hit
            result[key] = hit[1]
        return result


@attrs.define
class DocumentEncoder:
    """
    Encodes the pushed document, reusing the JSON of unchanged nodes.

    The JSON returned is shared with later documents: never modify it.
    """

    _configured: _Reused[Node] = attrs.field(factory=lambda: _Reused(node_to_json))
    _reported: _Reused[NodeState] = attrs.field(
        factory=lambda: _Reused(node_state_to_json)
    )

    def document(self, deployment: Deployment, state: DeploymentState) -> dict[str, Any]:
        """The ``{"configuration": ..., "state": ...}`` document for both."""
        nodes = self._configured.encode_all(deployment.nodes)
        return {
            "configuration": deployment_to_json(deployment, nodes),
            "state": {"nodes": self._reported.encode_all(state.nodes)},
        }
