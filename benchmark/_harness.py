"""Shared benchmark machinery: timing, statistics, results JSON and plots."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


class Timer:
    """A context manager measuring wall-clock seconds with a monotonic clock."""

    def __enter__(self) -> Timer:
        """Start timing."""
        self.start = time.monotonic()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop timing; the elapsed time is in ``seconds``."""
        self.seconds = time.monotonic() - self.start


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median, minimum, maximum and p95 of a list of samples."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "p95": p95,
        "count": len(ordered),
    }


def environment() -> dict[str, Any]:
    """What the results were measured on: machine, time, code revision."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "revision": revision or None,
    }


def write_results(
    name: str,
    results: dict[str, Any],
    plot: Callable[[Any], None] | None = None,
    directory: str = RESULTS_DIR,
) -> tuple[str, str | None]:
    """
    Write ``<name>.json`` (results plus environment) and ``<name>.png``.

    :param plot: Draws on a matplotlib ``Axes``; ``None`` writes no plot.
    :return: The paths written.
    """
    os.makedirs(directory, exist_ok=True)
    json_path = os.path.join(directory, f"{name}.json")
    document = {"scenario": name, "environment": environment(), "results": results}
    with open(json_path, "w") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
        handle.write("\n")
    png_path = None
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(8, 4.5))
        plot(axes)
        figure.tight_layout()
        png_path = os.path.join(directory, f"{name}.png")
        figure.savefig(png_path, dpi=100)
        plt.close(figure)
    return json_path, png_path
