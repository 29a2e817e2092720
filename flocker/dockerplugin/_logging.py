"""The eliot fields, messages and actions of the Docker volume plugin."""

from eliot import ActionType, Field, MessageType

VOLUME = Field.for_types(
    "volume", [str, type(None)], "The Docker volume name, or null if none was given."
)
MOUNT_ID = Field.for_types(
    "mount_id", [str, type(None)], "The ID Docker gave a Mount/Unmount, or null."
)
ERROR = Field.for_types(
    "error", [str], "The Err answered to Docker; empty when the request succeeded."
)
DATASET_ID = Field.for_types("dataset_id", [str], "The Flocker dataset's UUID.")
NODE_UUID = Field.for_types("node_uuid", [str], "A node's UUID.")
SOURCE_NODE = Field.for_types("source_node", [str], "The node the dataset was on.")
REASON = Field.for_types("reason", [str], "Why, in words.")

#: The plugin's API verbs (the part of the URL path after the last dot).
VERBS = (
    "activate",
    "capabilities",
    "create",
    "get",
    "list",
    "path",
    "mount",
    "unmount",
    "remove",
)

#: One ``flocker:dockerplugin:<verb>`` action per Docker request.
REQUESTS: dict[str, ActionType] = {
    verb: ActionType(
        f"flocker:dockerplugin:{verb}",
        [VOLUME, MOUNT_ID],
        [ERROR],
        f"Docker sent the volume plugin a {verb} request.",
    )
    for verb in VERBS
}

#: A Mount asked the control service to move a dataset to this node.
MOVING = MessageType(
    "flocker:dockerplugin:moving",
    [DATASET_ID, SOURCE_NODE, NODE_UUID],
    "A volume mounted on this node lives elsewhere: its dataset is being moved here.",
)

#: This node's lease on a dataset was acquired (a container mounts it).
LEASE_ACQUIRED = MessageType(
    "flocker:dockerplugin:lease_acquired",
    [DATASET_ID, NODE_UUID],
    "The plugin holds the dataset on this node while a container uses it.",
)

#: This node's lease on a dataset was released (no container mounts it).
LEASE_RELEASED = MessageType(
    "flocker:dockerplugin:lease_released",
    [DATASET_ID, NODE_UUID],
    "No container on this node uses the dataset any more; it may move.",
)

#: Releasing a lease failed; it stays until released by hand.
LEASE_RELEASE_FAILED = MessageType(
    "flocker:dockerplugin:lease_release_failed",
    [DATASET_ID, REASON],
    "The plugin could not release its lease on a dataset.",
)

#: The plugin listens for Docker.
STARTED = MessageType(
    "flocker:dockerplugin:started",
    [
        Field.for_types("socket", [str], "The unix socket Docker connects to."),
        NODE_UUID,
        Field.for_types(
            "control", [str], "The control service instances' HOST:PORT, comma-separated."
        ),
    ],
    "The Docker volume plugin started serving.",
)
