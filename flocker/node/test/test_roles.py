"""Tests for the durable record of dataset roles and their epochs."""

import json
from pathlib import Path
from uuid import uuid4

import pytest
from zope.interface.verify import verifyObject

from flocker.node._roles import (
    DIVERGED,
    PRIMARY,
    REPLICA,
    FileRoles,
    IDatasetRoles,
    MemoryRoles,
)

DS = str(uuid4())


def test_both_records_provide_the_interface(tmp_path: Path) -> None:
    """MemoryRoles and FileRoles both provide IDatasetRoles."""
    assert verifyObject(IDatasetRoles, MemoryRoles())
    assert verifyObject(IDatasetRoles, FileRoles(str(tmp_path / "roles.json")))


def test_epoch_is_kept_with_the_role(tmp_path: Path) -> None:
    """A role's epoch is durable, and setting a role without one keeps it."""
    path = str(tmp_path / "roles.json")
    roles = FileRoles(path)
    roles.set(DS, REPLICA, epoch=2)
    assert (FileRoles(path).get(DS), FileRoles(path).epoch(DS)) == (REPLICA, 2)
    roles.set(DS, PRIMARY)
    assert (FileRoles(path).get(DS), FileRoles(path).epoch(DS)) == (PRIMARY, 2)
    roles.set(DS, DIVERGED)
    assert FileRoles(path).get(DS) == DIVERGED


def test_records_of_earlier_releases_load_at_epoch_zero(tmp_path: Path) -> None:
    """A record of bare roles (before epochs existed) loads at epoch 0."""
    path = tmp_path / "roles.json"
    path.write_text(json.dumps({DS: "primary"}))
    roles = FileRoles(str(path))
    assert (roles.get(DS), roles.epoch(DS)) == (PRIMARY, 0)


def test_replica_at_epoch_zero_is_no_record() -> None:
    """A replica at epoch 0 is what an unknown dataset is: nothing recorded."""
    roles = MemoryRoles()
    roles.set(DS, PRIMARY)
    roles.set(DS, REPLICA, epoch=0)
    assert roles.all() == {}
    roles.set(DS, REPLICA, epoch=1)
    assert roles.all() == {DS: REPLICA}


@pytest.mark.parametrize(
    "entry",
    [{"role": "primary"}, {"role": "primary", "epoch": -1}, {"role": "boss", "epoch": 0},
     {"role": "primary", "epoch": True}, {"role": "primary", "epoch": 0, "x": 1}],
)
def test_malformed_entries_are_refused(
    tmp_path: Path, entry: dict[str, object]
) -> None:
    """An entry that is neither a role nor a role with its epoch is refused."""
    path = tmp_path / "roles.json"
    path.write_text(json.dumps({DS: entry}))
    with pytest.raises(ValueError, match="not a valid dataset role record"):
        FileRoles(str(path))
