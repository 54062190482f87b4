"""Run the peer comparison and print one Markdown table.

Standard library only: run it with any python3 (3.11 or newer), from anywhere:

    python3 benchmarks/peers/run.py --peers masa-jobs-postgres,pgqueuer --jobs 10000 --rounds 2

Each peer gets its own venv under benchmarks/peers/.venvs/<folder>, installed from
<folder>/requirements.txt (again whenever that file changes), and its script
<folder>/bench.py runs with that venv's python. Rounds are interleaved (every
selected peer once, then again), so a slow spell on a shared machine hits every
peer alike; the table shows the median of the rounds, and the raw results of
every round are written as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
RUNS = VENVS / "_runs"
# Marks a venv as installed from this exact requirements file.
STAMP = "requirements.sha256"


REPOSITORY = HERE.parent.parent
# The packages of this repository, installed editable into the masa-jobs venv.
EDITABLE_PACKAGES = (REPOSITORY / "masa_jobs", REPOSITORY / "containers")


@dataclass(frozen=True)
class PeerScript:
    folder: str
    args: tuple[str, ...] = ()
    editable: bool = False


PEERS: dict[str, PeerScript] = {
    "masa-jobs-postgres": PeerScript("masa-jobs", ("--store", "postgres"), editable=True),
    "pgqueuer": PeerScript("pgqueuer"),
    "procrastinate": PeerScript("procrastinate"),
    "masa-jobs-redis": PeerScript("masa-jobs", ("--store", "redis"), editable=True),
    "huey": PeerScript("huey"),
    "dramatiq": PeerScript("dramatiq"),
    "saq": PeerScript("saq"),
    "arq": PeerScript("arq"),
}


def _venv_python(folder: str, reinstall: bool) -> Path:
    """The venv of ``folder``, created and installed when missing or out of date."""
    venv = VENVS / folder
    requirements = HERE / folder / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / STAMP
    python = venv / "bin" / "python"
    if reinstall or not stamp.exists() or stamp.read_text().strip() != digest:
        print(f"installing {folder} into {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        # pip resolves relative paths in the file (the repository, for masa-jobs)
        # from the working directory: the peer's folder.
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
            cwd=HERE / folder,
            check=True,
        )
        stamp.write_text(digest + "\n")
    return python


@contextlib.contextmanager
def _locked(path: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on ``path``, so that only one benchmark runs at a time."""
    if path is None:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile_editable(python: Path) -> None:
    """Bytecode for the working tree's sources, as pip writes it for every
    other peer's installed files: an editable install has none, and where
    PYTHONDONTWRITEBYTECODE is set each worker start compiled masa-jobs anew
    (about 50 ms of its start-up on a 2-core machine)."""
    packages = [str(package) for package in EDITABLE_PACKAGES]
    subprocess.run([str(python), "-m", "compileall", "-q", *packages], check=True)


def _run_peer(name: str, python: Path, args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    peer = PEERS[name]
    if peer.editable:
        _compile_editable(python)
    out = run_dir / f"{name}-{time.time_ns()}.json"
    command = [str(python), str(HERE / peer.folder / "bench.py"), *peer.args]
    command += ["--jobs", str(args.jobs), "--latency-samples", str(args.latency_samples)]
    command += ["--out", str(out), "--log", str(run_dir / f"{name}-worker.log")]
    with _locked(args.lock):
        finished = subprocess.run(command, cwd=HERE / peer.folder)
    if finished.returncode:
        raise PeerFailed(f"{name}: bench.py exited with {finished.returncode} (see above)")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


class PeerFailed(Exception):
    """A peer's script failed; the other peers still run."""


def _fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _median(results: list[dict[str, Any]], pick: Callable[[dict[str, Any]], Any]) -> float | None:
    values = [pick(r) for r in results if pick(r) is not None]
    return statistics.median(values) if values else None


def table(by_peer: dict[str, list[dict[str, Any]]]) -> str:
    """The Markdown table: the median of the rounds of every figure."""
    lines = [
        "| Peer | Store | e2e default jobs/s | e2e tuned jobs/s | single enqueue jobs/s "
        "| bulk enqueue jobs/s | pickup p50 / p99 ms | idle worker RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for results in by_peer.values():
        first = results[0]

        def e2e(kind: str, rs: list[dict[str, Any]] = results) -> str:
            start = _median(rs, lambda r: r[kind]["per_s_from_start"])
            running = _median(rs, lambda r: r[kind]["per_s_from_first_job"])
            return f"{_fmt(start)} ({_fmt(running)})"

        p50 = _median(results, lambda r: r["idle"]["pickup_p50_ms"])
        p99 = _median(results, lambda r: r["idle"]["pickup_p99_ms"])
        rss = _median(results, lambda r: r["idle"]["rss_tree_mb"])
        processes = first["idle"]["processes"]
        rss_cell = _fmt(rss, 1)
        if processes > 1:
            main_rss = _median(results, lambda r: r["idle"]["rss_main_mb"])
            rss_cell += f" ({processes} processes; main {_fmt(main_rss, 1)})"
        lines.append(
            f"| {first['peer']} {first['version']} | {first['store']} "
            f"| {e2e('e2e_default')} | {e2e('e2e_tuned')} "
            f"| {_fmt(_median(results, lambda r: r['enqueue_single_per_s']))} "
            f"| {_fmt(_median(results, lambda r: r['enqueue_bulk_per_s']))} "
            f"| {_fmt(p50, 1)} / {_fmt(p99, 1)} | {rss_cell} |"
        )
    return "\n".join(lines)


def rounds_table(by_peer: dict[str, list[dict[str, Any]]]) -> str:
    """Every round's main figures, for judging the spread behind the medians."""
    lines = [
        "| Peer | Round | e2e default | e2e tuned | single enqueue | pickup p50 / p99 ms "
        "| RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for results in by_peer.values():
        for number, r in enumerate(results, 1):
            idle = r["idle"]
            lines.append(
                f"| {r['peer']} | {number} | {_fmt(r['e2e_default']['per_s_from_start'])} "
                f"| {_fmt(r['e2e_tuned']['per_s_from_start'])} "
                f"| {_fmt(r['enqueue_single_per_s'])} "
                f"| {_fmt(idle['pickup_p50_ms'], 1)} / {_fmt(idle['pickup_p99_ms'], 1)} "
                f"| {_fmt(idle['rss_tree_mb'], 1)} |"
            )
    return "\n".join(lines)


def settings_table(by_peer: dict[str, list[dict[str, Any]]]) -> str:
    """What each peer ran with: worker command, tuned options, bulk enqueue API."""
    lines = ["| Peer | Worker command | Tuned settings | Bulk enqueue |", "|---|---|---|---|"]
    for results in by_peer.values():
        first = results[0]
        tuned = first["e2e_tuned"]["settings"]
        options = tuned["options"]
        shown = (
            ", ".join(f"{k} {v}" for k, v in options.items())
            if isinstance(options, dict)
            else options
        )
        bulk = first["bulk_method"] or "none"
        lines.append(f"| {first['peer']} | `{tuned['command']}` | {shown} | {bulk} |")
    return "\n".join(lines)


def machine() -> str:
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    system = f"{platform.system()} {platform.machine()}"
    return f"{_cpu_model()}, {system}, {cores} cores, Python {platform.python_version()}"


def _cpu_model() -> str:
    """The processor's name: timings change several-fold from one model to another."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or "unknown CPU"


def _print_tables(
    by_peer: dict[str, list[dict[str, Any]]],
    jobs: int | None,
    rounds: int | None,
    host: str,
    each: bool = False,
) -> None:
    jobs = jobs or next(iter(by_peer.values()))[0]["jobs"]
    rounds = rounds or max(len(results) for results in by_peer.values())
    print(f"{jobs:,} no-op jobs, {rounds} rounds (median), {host}.")
    print("e2e: jobs/s from the worker's start (in brackets: from its first job).\n")
    print(table(by_peer))
    print()
    print(settings_table(by_peer))
    if each:
        print()
        print(rounds_table(by_peer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated, from: {', '.join(PEERS)} (default: %(default)s)",
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per phase (%(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the table shows the median")
    parser.add_argument(
        "--latency-samples", type=int, default=200, help="pickup samples (%(default)s)"
    )
    parser.add_argument(
        "--lock", type=Path, help="hold an exclusive lock on this file during each peer's run"
    )
    parser.add_argument("--reinstall", action="store_true", help="rebuild every selected venv")
    parser.add_argument("--json", type=Path, help="write every round's raw results here")
    parser.add_argument("--each", action="store_true", help="also print every round's figures")
    parser.add_argument(
        "--from-json", type=Path, help="print the tables of saved raw results; run nothing"
    )
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        results = saved["results"]
        _print_tables(results, saved.get("jobs"), saved.get("rounds"), saved["machine"], args.each)
        return
    names = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")

    pythons = {name: _venv_python(PEERS[name].folder, args.reinstall) for name in names}
    run_dir = RUNS / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    by_peer: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    failed: list[str] = []
    for round_number in range(1, args.rounds + 1):
        for name in names:
            print(f"round {round_number}/{args.rounds}: {name}", file=sys.stderr)
            try:
                by_peer[name].append(_run_peer(name, pythons[name], args, run_dir))
            except PeerFailed as error:
                print(f"error: {error}", file=sys.stderr)
                failed.append(f"{name} (round {round_number})")
    by_peer = {name: results for name, results in by_peer.items() if results}

    raw = json.dumps(
        {"machine": machine(), "jobs": args.jobs, "rounds": args.rounds, "results": by_peer},
        indent=2,
    )
    (run_dir / "results.json").write_text(raw + "\n")
    if args.json:
        args.json.write_text(raw + "\n")
    _print_tables(by_peer, args.jobs, args.rounds, machine(), args.each)
    if failed:
        print(f"\nFailed runs, left out of the medians: {', '.join(failed)}.")
        sys.exit(1)


if __name__ == "__main__":
    main()
