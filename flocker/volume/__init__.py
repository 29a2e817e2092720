"""Per-node storage for datasets and the snapshot streams between nodes."""
