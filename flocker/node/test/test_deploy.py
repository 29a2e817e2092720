"""Unit tests for state changes and their combinators."""

from typing import Any

from eliot.testing import LoggedAction
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from flocker.node import (
    ChangesFailed,
    IStateChange,
    NoOp,
    StateChange,
    changes_of,
    in_parallel,
    run_state_change,
    sequentially,
)


@implementer(IStateChange)
class Record(PClass):
    """A change that records its name in the deployer's list when run."""

    name = field(type=str)
    action_type = "flocker:node:test:record"

    def log_fields(self) -> dict[str, Any]:
        """The name."""
        return {"name": self.name}

    def run(self, deployer: "Deployer") -> Deferred[None]:
        """Append the name; fail if the deployer says this one fails."""
        deployer.ran.append(self.name)
        if self.name in deployer.failing:
            return fail(RuntimeError(f"{self.name} broke"))
        waiting = deployer.waiting.get(self.name)
        return waiting if waiting is not None else succeed(None)


class Deployer:
    """Just enough of a deployer for running ``Record`` changes."""

    def __init__(
        self,
        failing: set[str] | frozenset[str] = frozenset(),
        waiting: dict[str, Deferred[None]] | None = None,
    ) -> None:
        self.ran: list[str] = []
        self.failing = set(failing)
        self.waiting = waiting or {}


def test_interfaces() -> None:
    """Changes and combinators provide IStateChange."""
    for change in [NoOp(), Record(name="a"), sequentially([Record(name="a"), Record(name="b")]),
                   in_parallel([Record(name="a"), Record(name="b")])]:
        assert verifyObject(IStateChange, change)


def test_plans_compare_equal() -> None:
    """Plans built the same way compare equal; different ones do not."""
    a, b = Record(name="a"), Record(name="b")
    assert sequentially([a, b]) == sequentially([a, b])
    assert sequentially([a, b]) != sequentially([b, a])
    assert in_parallel([a, b]) != sequentially([a, b])


def test_simplification() -> None:
    """No-ops vanish, nesting flattens, single changes stand alone."""
    a, b, c = Record(name="a"), Record(name="b"), Record(name="c")
    assert sequentially([]) == NoOp()
    assert in_parallel([NoOp(), NoOp()]) == NoOp()
    no_op_then_a: list[StateChange[Deployer]] = [NoOp(), a]
    assert sequentially(no_op_then_a) == a
    assert sequentially([a, sequentially([b, c])]) == sequentially([a, b, c])
    assert in_parallel([in_parallel([a, b]), c]) == in_parallel([a, b, c])
    assert changes_of(sequentially([a, in_parallel([b, c])])) == [a, b, c]


def test_sequentially_stops_at_failure() -> None:
    """Sequential changes run in order and stop at the first failure."""
    deployer = Deployer(failing={"b"})
    d = run_state_change(sequentially([Record(name="a"), Record(name="b"), Record(name="c")]), deployer)
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert deployer.ran == ["a", "b"]
    assert failures[0].check(RuntimeError)


def test_sequentially_waits() -> None:
    """The next sequential change starts only after the previous one ends."""
    gate: Deferred[None] = Deferred()
    deployer = Deployer(waiting={"a": gate})
    d = run_state_change(sequentially([Record(name="a"), Record(name="b")]), deployer)
    assert deployer.ran == ["a"]
    gate.callback(None)
    assert deployer.ran == ["a", "b"]
    assert d.called


def test_in_parallel_runs_all_despite_failure() -> None:
    """Parallel changes all run; a failure is reported after all finish."""
    gate: Deferred[None] = Deferred()
    deployer = Deployer(failing={"a"}, waiting={"c": gate})
    d = run_state_change(
        in_parallel([Record(name="a"), Record(name="b"), Record(name="c")]), deployer
    )
    assert deployer.ran == ["a", "b", "c"]
    assert not d.called
    gate.callback(None)
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert failures[0].check(ChangesFailed)
    assert "a broke" in str(failures[0].value)


def test_synchronous_exception_becomes_failure() -> None:
    """A change whose run raises gives a failed Deferred, not an exception."""

    @implementer(IStateChange)
    class Raises(PClass):
        action_type = "flocker:node:test:raises"

        def log_fields(self) -> dict[str, Any]:
            return {}

        def run(self, deployer: object) -> Deferred[None]:
            raise ValueError("no")

    failures: list[Failure] = []
    run_state_change(Raises(), Deployer()).addErrback(failures.append)
    assert failures[0].check(ValueError)


def test_each_change_is_an_eliot_action(eliot_logger: Any) -> None:
    """Each change runs inside an action of its type, nested in combinators."""
    run_state_change(sequentially([Record(name="a"), Record(name="b")]), Deployer())
    [outer] = LoggedAction.of_type(eliot_logger.messages, "flocker:node:sequentially")
    inner = LoggedAction.of_type(eliot_logger.messages, "flocker:node:test:record")
    assert [action.start_message["name"] for action in inner] == ["a", "b"]
    assert all(action.succeeded for action in inner)
    assert [child.start_message["name"] for child in outer.children] == ["a", "b"]
