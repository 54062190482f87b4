"""docs/examples/test_with_masa_jobs.py passes when pytest runs it, as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys

from .support import EXAMPLES, ROOT

TIMEOUT = 120.0


def test_the_testing_example_passes_under_pytest() -> None:
    example = EXAMPLES / "test_with_masa_jobs.py"
    # The user's environment, without settings meant for another store.
    env = {name: value for name, value in os.environ.items() if not name.startswith("MASA_JOBS_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(example), "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout
    assert "failed" not in done.stdout
