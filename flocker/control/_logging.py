"""The eliot fields, messages and actions of the control service's core.

(The REST API and the AMP protocol declare theirs beside their code, or here,
named ``flocker:control:<subsystem>:<verb>``.)
"""

from eliot import ActionType, Field, MessageType

GENERATION = Field.for_types(
    "generation", [int], "The configuration's generation (its version number)."
)
EXPECTED_GENERATION = Field.for_types(
    "expected_generation",
    [int, type(None)],
    "The generation a write expects to replace, or null for whatever is current.",
)
CHANGED = Field.for_types("changed", [bool], "Whether the configuration changed.")
STORE = Field.for_types("store", [str], "Which configuration store, e.g. a path.")
NODE_UUID = Field.for_types("node_uuid", [str], "A node's UUID.")
REASON = Field.for_types("reason", [str], "Why, in words.")
INSTANCE = Field.for_types("instance", [str], "A control instance's identifier.")

#: The configuration was read from its store.
LOAD_CONFIGURATION = ActionType(
    "flocker:control:configuration:load",
    [STORE],
    [GENERATION],
    "The control service read the desired configuration from its store.",
)

#: The configuration was written durably to its store (compare-and-swap).
SAVE_CONFIGURATION = ActionType(
    "flocker:control:configuration:save",
    [STORE, EXPECTED_GENERATION],
    [GENERATION],
    "The control service wrote the desired configuration durably to its store.",
)

#: A change function was applied to the configuration and the result saved.
CHANGE_CONFIGURATION = ActionType(
    "flocker:control:configuration:change",
    [EXPECTED_GENERATION],
    [GENERATION, CHANGED],
    "The desired configuration was changed (and saved before acknowledging).",
)

#: Another writer changed the store under us; the change is retried.
CONFLICT = MessageType(
    "flocker:control:configuration:conflict",
    [EXPECTED_GENERATION, GENERATION],
    "The store had a newer generation than expected; reloading and retrying.",
)

#: Another control instance saved a newer configuration to the shared store.
ADOPT_CONFIGURATION = MessageType(
    "flocker:control:configuration:adopt",
    [GENERATION],
    "Another control instance saved a newer configuration; this one now serves it.",
)

#: A subscriber raised while being told of a new configuration.
SUBSCRIBER_FAILED = MessageType(
    "flocker:control:configuration:subscriber_failed",
    [REASON],
    "A subscriber to configuration changes failed; the others were still told.",
)

#: A node's state report was merged into the cluster state.
NODE_STATE_UPDATED = MessageType(
    "flocker:control:cluster_state:node_updated",
    [NODE_UUID],
    "A node reported (part of) its state.",
)

#: A node was silent too long and its state was forgotten.
NODE_STATE_EXPIRED = MessageType(
    "flocker:control:cluster_state:node_expired",
    [NODE_UUID],
    "A node was silent past the expiry time; its state is now unknown.",
)

CONTAINER_STATE_EXPIRED = MessageType(
    "flocker:control:cluster_state:containers_expired",
    [NODE_UUID],
    "A node's container agent was silent past the expiry time while its "
    "dataset agent still reported: what it reported (applications, their "
    "health) is now unknown.",
)

DATASET_ID = Field.for_types("dataset_id", [str], "A dataset's UUID.")
FAILOVER_FROM = Field.for_types(
    "from", [str, type(None)], "The node that was the primary before the failover."
)
FAILOVER_TO = Field.for_types("to", [str], "The node whose replica becomes the primary.")
EPOCH = Field.for_types("epoch", [int], "The dataset's epoch after the failover.")
FORCE = Field.for_types(
    "force", [bool], "The user forced it although the primary was heard from recently."
)

#: A standing replica was promoted to primary at the user's request.
FAILOVER = ActionType(
    "flocker:control:failover",
    [DATASET_ID, FAILOVER_TO, FORCE],
    [FAILOVER_FROM, EPOCH, REASON],
    "A dataset (with the others of its application) failed over to a standing "
    "replica: its epoch went up and the old primary left the configuration.",
)

APPLICATION = Field.for_types("application", [str], "An application's name.")
OLD_PORT = Field.for_types("old_port", [int], "The external port given up.")
NEW_PORT = Field.for_types("new_port", [int], "The external port used instead.")

#: Environment copies were moved off ports their nodes could not publish.
MOVE_COPY_PORTS = ActionType(
    "flocker:control:environment:move_ports",
    [],
    [GENERATION],
    "Environment copies' applications were given new ports because their "
    "nodes reported the old ones taken by another program.",
)

#: One port of a copy's application was moved (inside MOVE_COPY_PORTS).
COPY_PORT_MOVED = MessageType(
    "flocker:control:environment:port_moved",
    [APPLICATION, NODE_UUID, OLD_PORT, NEW_PORT, REASON],
    "A copy's application publishes a new port instead of a taken one.",
)

#: A copy's application was moved too often already; it is left as it is.
COPY_PORT_MOVES_EXHAUSTED = MessageType(
    "flocker:control:environment:port_moves_exhausted",
    [APPLICATION, NODE_UUID, REASON],
    "A copy's application still cannot publish its ports after the most "
    "moves allowed; it waits for the user (or for the port to be freed).",
)

DATASETS = Field(
    "datasets",
    lambda ids: list(ids),
    "The ids of every dataset failing over together (those of one application).",
)
SNAPSHOT = Field.for_types(
    "snapshot", [str], "The snapshot the new primary of the dataset starts from."
)
PRIMARY = Field.for_types("primary", [str], "The node that is the dataset's primary.")
SILENT_SINCE = Field.for_types(
    "silent_since",
    [float, int],
    "When (POSIX time) the primary's dataset agent was last heard from, or "
    "when the control service started if later.",
)

#: The control service promoted a replica because the primary went silent.
AUTOMATIC_FAILOVER = ActionType(
    "flocker:control:failover:automatic",
    [DATASET_ID, DATASETS, FAILOVER_FROM, FAILOVER_TO, EPOCH, SNAPSHOT, REASON],
    [GENERATION],
    "A dataset with automatic failover (with the others of its application) "
    "failed over to the live node holding the newest replica, because its "
    "primary's dataset agent was silent for failover_after seconds; the old "
    "primary stays a standing replica.",
)

#: A primary is silent but no replica can take over (logged once per silence).
FAILOVER_WAITING = MessageType(
    "flocker:control:failover:waiting",
    [DATASET_ID, DATASETS, PRIMARY, SILENT_SINCE, REASON],
    "A dataset with automatic failover has a silent primary, but no live node "
    "holds a usable replica of all its application's datasets: nothing changes "
    "until one does or the primary is heard from again.",
)
