"""The node agents: discover local state, calculate changes, converge."""

from ._deploy import (
    ChangesFailed,
    Deployer,
    ILocalState,
    IStateChange,
    NoOp,
    StateChange,
    changes_of,
    in_parallel,
    run_state_change,
    sequentially,
)
from ._loop import DEFAULT_POLL_INTERVAL, ConvergenceLoop

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "ChangesFailed",
    "ConvergenceLoop",
    "Deployer",
    "ILocalState",
    "IStateChange",
    "NoOp",
    "StateChange",
    "changes_of",
    "in_parallel",
    "run_state_change",
    "sequentially",
]
