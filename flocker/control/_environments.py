"""
Environments: named groups of applications cloned, with their data, N times.

An `Environment` remembers which applications it was made from
(``applications``, the *originals*), the snapshot it took of each of their
datasets (``snapshot``, the same name on every dataset) and its copies.
Each `EnvironmentCopy` maps every original application to its copy's name
and every original dataset to the dataset cloned from it for this copy.  The
copies' applications and datasets are ordinary configuration (they run,
move and are listed like any other); the environment only ties them
together, so that a copy can be reset to the snapshot or deleted as a
whole.  The operations are in `flocker.control._cloning`.
"""

from __future__ import annotations

from pyrsistent import PClass, field, pmap_field, pvector_field

from ._checks import name_invariant, snapshot_name_invariant


def _copy_name_invariant(value: object) -> tuple[bool, str]:
    return name_invariant(value)


class EnvironmentCopy(PClass):
    """
    One copy of an environment.

    :ivar name: the copy's name (``alice``, ``1``…), unique in its environment.
    :ivar applications: original application name → the copy's application.
    :ivar datasets: original dataset id → the copy's clone of it.
    """

    name = field(type=str, mandatory=True, invariant=_copy_name_invariant)
    applications = pmap_field(str, str)
    datasets = pmap_field(str, str)


class Environment(PClass):
    """
    A group of applications and its copies.

    :ivar name: the environment's name.
    :ivar snapshot: the snapshot of every original dataset the copies are
        cloned from.
    :ivar applications: the original applications' names.
    :ivar copies: copy name → `EnvironmentCopy`.
    """

    name = field(type=str, mandatory=True, invariant=name_invariant)
    snapshot = field(type=str, mandatory=True, invariant=snapshot_name_invariant)
    applications = pvector_field(str)
    copies = pmap_field(str, EnvironmentCopy)


__all__ = ["Environment", "EnvironmentCopy"]
