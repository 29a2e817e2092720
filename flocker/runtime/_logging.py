"""The eliot fields and actions that flocker.runtime logs.

Every runtime operation is one action named ``flocker:runtime:<verb>`` with
the runtime's kind (``docker``, ``memory``) and node UUID first.
"""

from __future__ import annotations

from eliot import ActionType, Field

RUNTIME = Field.for_types("runtime", [str], "The kind of runtime: docker, memory.")
NODE_UUID = Field.for_types("node_uuid", [str], "The node whose containers these are.")
NAME = Field.for_types("name", [str], "An application (container) name.")
IMAGE = Field.for_types("image", [str], "An image reference.")
TIMEOUT = Field.for_types("timeout", [float, int], "Seconds before SIGKILL.")
AUTHENTICATED = Field.for_types(
    "authenticated", [bool], "Whether registry credentials were given (never which)."
)


def _action(verb: str, fields: list[Field], description: str) -> ActionType:
    """An action type ``flocker:runtime:<verb>`` with the common fields first."""
    return ActionType(
        f"flocker:runtime:{verb}", [RUNTIME, NODE_UUID, *fields], [], description
    )


LIST_CONTAINERS = _action("list_containers", [], "The node's containers are listed.")
LIST_STATES = _action("list_states", [], "The node's container states are read.")
INSPECT = _action("inspect", [NAME], "A container's state is read.")
CREATE = _action("create", [NAME, IMAGE], "A container is created and started.")
START = _action("start", [NAME], "A stopped container is started.")
STOP = _action("stop", [NAME, TIMEOUT], "A container is stopped.")
REMOVE = _action("remove", [NAME], "A container is removed.")
HALT = _action("halt", [NAME], "A container's processes are killed, and seen gone.")
CONNECTIONS = _action(
    "connections", [NAME], "The connections open to a container's ports are counted."
)
IMAGE_EXISTS = _action("image_exists", [IMAGE], "The engine is asked for an image.")
PULL_IMAGE = _action(
    "pull_image", [IMAGE, AUTHENTICATED], "An image is pulled from its registry."
)
