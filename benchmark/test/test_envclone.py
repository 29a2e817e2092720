"""Tests for the pure parts of the environment-clone benchmark."""

from benchmark._harness import write_results
from benchmark.envclone import plot


def test_results_plot(tmp_path):
    """A results document is written as JSON with its plot."""
    results = {
        "data_bytes": 2 * 1024**3,
        "environments": [
            {"name": "env1", "api_seconds": 0.4, "ready_seconds": 1.2, "extra_bytes": 300_000},
            {"name": "env2", "api_seconds": 0.5, "ready_seconds": 1.4, "extra_bytes": 310_000},
        ],
        "ready_seconds": {"median": 1.3},
        "worst_extra_bytes": 310_000,
        "container_start_seconds": {"median": 0.35},
    }
    json_path, png_path = write_results("envclone", results, plot(results), str(tmp_path))
    assert png_path is not None and (tmp_path / "envclone.png").stat().st_size > 0
    assert (tmp_path / "envclone.json").exists()
