"""
``.ci/run`` runs the README's two commands in the order the README gives
them — the main job, then the tests beside the cluster it leaves — and
stops that cluster afterwards, keeping the first failure's status.
"""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def fake_checkout(tmp_path: Path, quickstart: int = 0, run_tests: int = 0) -> Path:
    """
    A copy of ``.ci/run`` beside stand-in ``admin/`` scripts that log their
    calls to ``calls`` and exit with the given statuses.
    """
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    admin = tmp_path / "admin"
    admin.mkdir()
    for name, status in (("quickstart", quickstart), ("run-tests", run_tests), ("lab", 0)):
        script = admin / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "$(dirname "$0")/../calls"\nexit {status}\n')
        os.chmod(script, 0o755)
    return tmp_path


def run_ci(checkout: Path) -> tuple[int, list[str]]:
    """Run the copied ``.ci/run``; its exit status and the calls made."""
    result = subprocess.run(["bash", str(checkout / ".ci" / "run")], capture_output=True, text=True)
    calls = (checkout / "calls").read_text().splitlines() if (checkout / "calls").exists() else []
    return result.returncode, calls


def test_runs_the_readme_commands_in_order_then_stops_the_cluster(tmp_path: Path) -> None:
    """The main job first, the tests beside its cluster, then the cluster goes."""
    status, calls = run_ci(fake_checkout(tmp_path))
    assert status == 0
    assert calls == ["quickstart ", "run-tests ", "lab down --dir _lab/quickstart"]


def test_failing_tests_fail_ci_and_still_stop_the_cluster(tmp_path: Path) -> None:
    """A test failure is CI's status, and the quickstart's cluster is stopped anyway."""
    status, calls = run_ci(fake_checkout(tmp_path, run_tests=1))
    assert status == 1
    assert calls[-1] == "lab down --dir _lab/quickstart"


def test_failing_main_job_stops_ci_before_the_tests(tmp_path: Path) -> None:
    """If the main job fails, CI fails with its status and runs nothing else."""
    status, calls = run_ci(fake_checkout(tmp_path, quickstart=3))
    assert status == 3
    assert calls == ["quickstart "]
