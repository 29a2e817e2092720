"""The node agents: discover local state, calculate changes, converge."""
