"""The node agents: discover local state, calculate changes, converge."""

from ._deploy import (
    ChangesFailed,
    IDeployer,
    ILocalState,
    IStateChange,
    NoOp,
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
    "IDeployer",
    "ILocalState",
    "IStateChange",
    "NoOp",
    "changes_of",
    "in_parallel",
    "run_state_change",
    "sequentially",
]
