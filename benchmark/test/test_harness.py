"""Unit tests for the benchmark harness's statistics and result files."""

import json

from benchmark._harness import summarize, write_results


def test_summarize():
    """Median, extremes, p95 and count describe the samples."""
    summary = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert summary == {"median": 3.0, "min": 1.0, "max": 5.0, "p95": 5.0, "count": 5}


def test_write_results(tmp_path):
    """Results are written as JSON with the environment, and a PNG plot."""
    json_path, png_path = write_results(
        "example",
        {"ratio": 0.95},
        plot=lambda axes: axes.bar(["a"], [1]),
        directory=str(tmp_path),
    )
    document = json.loads(open(json_path).read())
    assert document["scenario"] == "example"
    assert document["results"] == {"ratio": 0.95}
    assert "measured_at" in document["environment"]
    assert open(png_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
