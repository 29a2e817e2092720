"""The eliot fields and actions that flocker.volume logs.

Every backend operation is one action named ``flocker:volume:<verb>``, with
the backend's kind and the dataset it is about; the external commands it
runs (``zfs``, ``losetup``…) appear as child actions.
"""

from eliot import ActionType, Field, MessageType

BACKEND = Field.for_types("backend", [str], "The kind of backend: zfs, directory…")
DATASET_ID = Field.for_types("dataset_id", [str], "The dataset's UUID.")
NEW_DATASET_ID = Field.for_types("new_dataset_id", [str], "The id of a clone.")
SNAPSHOT = Field.for_types("snapshot", [str, type(None)], "A snapshot's name.")
BASE = Field.for_types(
    "base", [str, type(None)], "The base snapshot of an incremental stream."
)
MAXIMUM_SIZE = Field.for_types(
    "maximum_size", [int, type(None)], "A size limit in bytes, or null: none."
)
READ_ONLY = Field.for_types(
    "read_only", [bool, type(None)], "Whether a dataset is to be read-only."
)
REPLACE = Field.for_types(
    "replace", [bool, type(None)], "Whether a full receive may replace a copy."
)
BYTES = Field.for_types("bytes", [int], "How many bytes of a stream passed.")
REASON = Field.for_types("reason", [str], "Why something failed.")


def _action(verb: str, fields: list[Field], description: str) -> ActionType:
    """An action type ``flocker:volume:<verb>`` with the common fields first."""
    return ActionType(f"flocker:volume:{verb}", [BACKEND, *fields], [], description)


CREATE = _action("create", [DATASET_ID, MAXIMUM_SIZE], "A dataset is created.")
DESTROY = _action("destroy", [DATASET_ID], "A dataset is destroyed.")
GET = _action("get", [DATASET_ID], "A dataset's details are looked up.")
EVICT_CACHE = _action(
    "evict_cache", [DATASET_ID], "The kernel is asked to drop what it caches of a dataset's files."
)
LIST_DATASETS = _action("list_datasets", [], "The datasets are listed.")
LIST_WITH_SNAPSHOTS = _action(
    "list_datasets_with_snapshots", [], "The datasets are listed, each with its snapshots."
)
POOL_SPACE = _action("pool_space", [], "The room the datasets have is looked up.")
ROOM_KEPT = MessageType(
    "flocker:volume:room_kept",
    [
        BACKEND,
        Field.for_types("pool", [str], "The pool (or parent filesystem)."),
        Field.for_types("quota", [int, type(None)], "The quota on it, or null if none."),
        Field.for_types("reserve", [int], "Bytes the datasets cannot take."),
        Field.for_types("reason", [str], "What was done, or why nothing was."),
    ],
    "The backend kept room in its pool for snapshots and sends, so that a "
    "full pool can still be drained.",
)
SET_MAXIMUM_SIZE = _action(
    "set_maximum_size", [DATASET_ID, MAXIMUM_SIZE], "A size limit changes."
)
SET_READ_ONLY = _action(
    "set_read_only",
    [DATASET_ID, READ_ONLY],
    "A dataset becomes read-only or writable again.",
)
SNAPSHOT_ACTION = _action("snapshot", [DATASET_ID, SNAPSHOT], "A snapshot is taken.")
LIST_SNAPSHOTS = _action("list_snapshots", [DATASET_ID], "Snapshots are listed.")
ROLLBACK = _action(
    "rollback", [DATASET_ID, SNAPSHOT], "A dataset returns to a snapshot."
)
DESTROY_SNAPSHOT = _action(
    "destroy_snapshot", [DATASET_ID, SNAPSHOT], "A snapshot is destroyed."
)
SET_ASIDE = _action(
    "set_aside",
    [DATASET_ID, SNAPSHOT, BASE],
    "A dataset's contents are set aside and it returns to a snapshot.",
)
LIST_SET_ASIDE = _action(
    "list_set_aside", [DATASET_ID], "A dataset's set-aside snapshots are listed."
)
CLONE = _action(
    "clone", [DATASET_ID, SNAPSHOT, NEW_DATASET_ID], "A snapshot is cloned."
)
SEND = _action("send", [DATASET_ID, SNAPSHOT, BASE], "A stream is prepared.")
RECEIVE = _action(
    "receive", [DATASET_ID, BASE, REPLACE], "A receive is prepared."
)
SEND_STREAM = _action(
    "send_stream", [DATASET_ID, SNAPSHOT, BASE], "A stream's bytes flow out."
)
RECEIVE_FINISH = _action(
    "receive_finish", [DATASET_ID, BASE], "A received stream is made visible."
)
RECEIVE_ABORT = _action(
    "receive_abort", [DATASET_ID, BASE], "A receive is rolled back."
)

#: A received stream was refused; the dataset keeps its previous state.
BAD_STREAM = MessageType(
    "flocker:volume:bad_stream",
    [DATASET_ID, REASON],
    "A received stream was truncated, corrupt or did not match; rolled back.",
)

#: Something a completed operation should have removed was left behind.
LEFTOVER = MessageType(
    "flocker:volume:leftover",
    [DATASET_ID, REASON],
    "A temporary object could not be removed; recover() removes it later.",
)
