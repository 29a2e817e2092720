"""Checks and helpers shared by the backends: names, the logging decorator."""

from __future__ import annotations

import functools
import inspect
import re
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from eliot import ActionType
from twisted.internet.defer import Deferred

from ..common import logged
from ._interface import (
    InvalidBase,
    InvalidName,
    SnapshotExists,
    SnapshotInfo,
    UnknownSnapshot,
)

T = TypeVar("T")
P = ParamSpec("P")


class _HasKind(Protocol):
    """A backend: its ``kind`` names it in the logs (``zfs``, ``directory``…)."""

    kind: str


_Backend = TypeVar("_Backend", bound=_HasKind)

_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9_:][A-Za-z0-9_.:-]{0,199}$")


def check_dataset_id(dataset_id: object) -> str:
    """The canonical text of a dataset UUID, or :class:`InvalidName`."""
    if not isinstance(dataset_id, str):
        raise InvalidName(f"dataset id must be a string: {dataset_id!r}")
    try:
        return str(uuid.UUID(dataset_id))
    except ValueError:
        raise InvalidName(f"dataset id is not a UUID: {dataset_id!r}") from None


def check_snapshot_name(name: object) -> str:
    """``name`` if it is a valid snapshot name, else :class:`InvalidName`."""
    if not isinstance(name, str) or not _SNAPSHOT_NAME.match(name):
        raise InvalidName(f"bad snapshot name: {name!r}")
    return name


def check_maximum_size(maximum_size: object) -> int | None:
    """A positive byte count or ``None``, else :class:`InvalidName`."""
    if maximum_size is None:
        return None
    if isinstance(maximum_size, bool) or not isinstance(maximum_size, int):
        raise InvalidName(f"maximum size must be an int: {maximum_size!r}")
    if maximum_size <= 0:
        raise InvalidName(f"maximum size must be positive: {maximum_size!r}")
    return maximum_size


def _check_flag(name: str) -> Callable[[object], bool]:
    """A check that the argument ``name`` is a bool, else :class:`InvalidName`."""

    def check(value: object) -> bool:
        if not isinstance(value, bool):
            raise InvalidName(f"{name} must be a bool: {value!r}")
        return value

    return check


def check_send_names(
    dataset_id: str, snapshots: list[SnapshotInfo], snapshot: str, base: str | None
) -> None:
    """Check that ``snapshot`` (and ``base``, older) are among ``snapshots``."""
    names = [s.name for s in snapshots]
    if snapshot not in names:
        raise UnknownSnapshot(dataset_id, snapshot)
    if base is not None:
        if base not in names:
            raise UnknownSnapshot(dataset_id, base)
        if names.index(base) >= names.index(snapshot):
            raise InvalidBase(f"{base!r} is not older than {snapshot!r}")


def check_replace(base: str | None, replace: bool) -> None:
    """
    A replacing ``receive`` takes only a full stream (else
    :class:`InvalidBase`): an incremental stream never replaces a copy.
    """
    if replace and base is not None:
        raise InvalidBase(
            f"only a full stream replaces a copy, not one based on {base!r}"
        )


def check_set_aside(
    dataset_id: str, snapshots: list[str], set_aside: list[str], name: str, base: str
) -> int:
    """
    The one check of ``set_aside`` every backend makes before changing
    anything: ``base`` must be one of the dataset's ``snapshots`` (else
    :class:`UnknownSnapshot`) and ``name`` neither a snapshot nor one of its
    ``set_aside`` snapshots (else :class:`SnapshotExists`).

    :return: The position of ``base`` in ``snapshots``.
    """
    if base not in snapshots:
        raise UnknownSnapshot(dataset_id, base)
    if name in snapshots or name in set_aside:
        raise SnapshotExists(dataset_id, name)
    return snapshots.index(base)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


#: How each argument of a backend operation becomes a field of its action:
#: the caller's value, which may be bad (the operation then refuses it), made
#: to fit the field's types in ``_logging``.
_AS_FIELD: dict[str, Callable[[object], object]] = {
    "dataset_id": str,
    "new_dataset_id": str,
    "snapshot": str,
    "base": _text_or_none,
    "maximum_size": _int_or_none,
    "read_only": _bool_or_none,
    "replace": _bool_or_none,
}


#: How each argument of a backend operation is checked (:class:`InvalidName`
#: if it is bad) and made canonical before the operation runs.
_CHECK: dict[str, Callable[[object], object]] = {
    "dataset_id": check_dataset_id,
    "new_dataset_id": check_dataset_id,
    "snapshot": check_snapshot_name,
    "base": check_snapshot_name,
    "maximum_size": check_maximum_size,
    "read_only": _check_flag("read_only"),
    "replace": _check_flag("replace"),
}


def backend_operation(
    action_type: ActionType, **parameters: str
) -> Callable[
    [Callable[Concatenate[_Backend, P], Coroutine[Any, Any, T]]],
    Callable[Concatenate[_Backend, P], Deferred[T]],
]:
    """
    Make an ``async`` method of a backend an :class:`IVolumeBackend`
    operation: called, it returns a Deferred of the coroutine, which runs
    inside one ``action_type`` action with the backend's ``kind`` and the
    method's arguments as the action's fields.

    Inside the action, before the method runs, each argument is checked
    (:class:`InvalidName` if it is bad) and made canonical (a dataset id's
    lower-case text): dataset ids, snapshot names (and a ``base``, which
    may be ``None`` where the method's default is ``None``), a maximum
    size (a positive int or ``None``) and the flags ``read_only`` and
    ``replace`` (bools).  The method sees only good, canonical values.

    An argument is logged under its own name when that is a field of
    backend operations (``dataset_id``, ``new_dataset_id``, ``snapshot``,
    ``base``, ``maximum_size``, ``read_only``, ``replace``), as given by
    the caller (it may be bad: the method then refuses it) made to fit the
    field's types in ``_logging``: ids and snapshot names as text, a
    ``base`` that is not text, a ``maximum_size`` that is not an int and a
    ``read_only`` or ``replace`` that is not a bool as null.

    :param parameters: Fields whose argument has another name, e.g.
        ``snapshot="name"``.
    """
    field_of = {parameter: field for field, parameter in parameters.items()}

    def decorate(
        method: Callable[Concatenate[_Backend, P], Coroutine[Any, Any, T]],
    ) -> Callable[Concatenate[_Backend, P], Deferred[T]]:
        signature = inspect.signature(method)
        fields = {
            name: field_of.get(name, name)
            for name in list(signature.parameters)[1:]
            if field_of.get(name, name) in _AS_FIELD
        }
        missing = set(field_of) - set(signature.parameters)
        if missing:
            raise TypeError(f"{method.__qualname__} has no argument {missing}")

        optional = {
            name for name, parameter in signature.parameters.items()
            if parameter.default is None
        }

        @functools.wraps(method)
        def operation(
            self: _Backend, /, *args: P.args, **kwargs: P.kwargs
        ) -> Deferred[T]:
            arguments = signature.bind(self, *args, **kwargs)
            arguments.apply_defaults()
            values = {
                field: _AS_FIELD[field](arguments.arguments[name])
                for name, field in fields.items()
            }

            async def checked() -> T:
                for name, field in fields.items():
                    value = arguments.arguments[name]
                    if value is not None or name not in optional:
                        arguments.arguments[name] = _CHECK[field](value)
                return await method(*arguments.args, **arguments.kwargs)

            return logged(action_type, checked, backend=self.kind, **values)

        return operation

    return decorate
