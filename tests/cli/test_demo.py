"""``masa-jobs demo`` runs its scenario to the end, in a subprocess, without a terminal."""

from __future__ import annotations

import re

import pytest

from ._cli import clean_env, run_cli

# Wide enough that no summary cell wraps, so each job's row is one line.
WIDTH = "200"


def _row(output: str, name: str, user: str) -> str:
    """The summary table's line for one job (log lines above it mention jobs too)."""
    summary = output[output.index("Summary") :]
    for line in summary.splitlines():
        if name in line and re.search(rf"\b{user}\b", line):
            return line
    raise AssertionError(f"no summary row for {name} / {user} in:\n{output}")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_runs_to_completion_with_a_summary(backend: str) -> None:
    result = run_cli("demo", "--backend", backend, env=clean_env(COLUMNS=WIDTH))

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Summary" in out
    assert "All 8 jobs finished as expected" in out
    assert "(7 succeeded, 1 dead)" in out
    # Not a terminal: plain text, no cursor movement or colour codes.
    assert "\x1b[" not in out
    flaky = _row(out, "demo.user-signed-up", "grace")
    assert re.search(r"succeeded\s*\S\s*3\b", flaky)
    assert "welcome mail x1" in flaky
    declined = _row(out, "demo.charge-trial", "alan")
    assert re.search(r"dead\s*\S\s*3\b", declined)
    assert "ChargeTrialCard" in declined
    delayed = _row(out, "demo.follow-up-mail", "ada")
    assert re.search(r"started after 1\.\d\d s", delayed)  # it waited for its delay
