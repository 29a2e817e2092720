"""A manifestation's desired role and its discovered phase.

The dataset calculator decides each dataset's next step from a pair:

* the **desired role** of this node's copy, read from the configuration
  (`desired_role`): primary here; a standing replica here; the source of
  a move (the transient copy a move leaves on the node that was primary
  when it was asked for); the dataset lives elsewhere only; it is deleted;
  fenced (this node fenced itself and the dataset fails over automatically:
  the configuration it holds may be stale, so nothing of it is exposed);
* the **discovered phase** of the local copy (`LocalDataset.phase`): absent,
  primary, moving (primary, with move rounds sent), handing off (no longer
  exposed, the final increment on its way), replica (received, never
  exposed), diverged (this node's copy of an epoch that a promotion
  elsewhere superseded: kept, never exposed, never overwritten), fenced
  (the primary's copy while its node fenced itself: not exposed).
"""

from __future__ import annotations

from enum import StrEnum

from flocker.control import Deployment

from ._fence import fence_applies


class Desired(StrEnum):
    """What the configuration wants of this node's copy of a dataset."""

    PRIMARY = "primary"
    REPLICA = "replica"
    SOURCE = "source"
    ELSEWHERE = "elsewhere"
    DELETED = "deleted"
    FENCED = "fenced"


class Phase(StrEnum):
    """Where this node's copy of a dataset is in its life."""

    ABSENT = "absent"
    PRIMARY = "primary"
    MOVING = "moving"
    HANDOFF = "handoff"
    REPLICA = "replica"
    DIVERGED = "diverged"
    FENCED = "fenced"


def desired_role(
    configuration: Deployment, node_uuid: str, dataset_id: str, fenced: bool = False
) -> Desired | None:
    """
    The role the configuration gives this node's copy, or ``None`` for a
    dataset the configuration does not know (left alone: never lose data).
    While the node is ``fenced``, a dataset the fence applies to (see
    ``_fence.fence_applies``) is `Desired.FENCED` whatever the stale
    configuration says.
    """
    if fenced and fence_applies(configuration, dataset_id):
        return Desired.FENCED
    for node in configuration.nodes.values():
        manifestation = node.manifestations.get(dataset_id)
        if manifestation is None:
            continue
        if manifestation.dataset.deleted:
            return Desired.DELETED
        break
    else:
        return None
    mine = configuration.get_node(node_uuid).manifestations.get(dataset_id)
    if mine is not None and mine.primary:
        return Desired.PRIMARY
    if mine is not None and mine.standing:
        return Desired.REPLICA
    if mine is not None:
        return Desired.SOURCE
    return Desired.ELSEWHERE


__all__ = ["Desired", "Phase", "desired_role"]
