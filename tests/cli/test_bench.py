"""``masa-jobs bench`` runs and reports numbers (a functional test: no timing asserted)."""

from __future__ import annotations

import json

from ._cli import run_cli


def test_bench_json_reports_every_measure() -> None:
    result = run_cli("bench", "--jobs", "500", "--latency-samples", "20", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["store"] == "memory"
    assert report["jobs"] == 500
    for key in ("enqueue_single_jobs_per_s", "enqueue_bulk_jobs_per_s", "end_to_end_jobs_per_s"):
        assert report[key] > 0, key
    pickup = report["pickup_latency_ms"]
    assert pickup["samples"] == 20
    assert 0 < pickup["p50"] <= pickup["p99"]
    assert report["peak_rss_mib"] > 0


def test_bench_table_on_trio() -> None:
    result = run_cli("bench", "--jobs", "200", "--latency-samples", "5", "--backend", "trio")

    assert result.returncode == 0, result.stderr
    for measure in ("enqueue, one at a time", "end to end", "pickup latency p50", "peak RSS"):
        assert measure in result.stdout


def test_bench_refuses_an_unknown_store() -> None:
    result = run_cli("bench", "--store", "nope")

    assert result.returncode == 2
    assert "nope" in result.stderr
