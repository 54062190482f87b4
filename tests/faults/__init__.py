"""The fault suite: real worker processes, real stores, and the faults a fleet meets.

Every delivery promise the docs make has a scenario here (see DESIGN.md,
"Quality bar"): SIGKILL storms, frozen workers, store outages through a proxy
the test owns, killed store connections, skewed worker clocks, outcomes the
store would refuse, rolling deploys and recurring jobs under all of these.
Each scenario's ledger (one line per handler start and end, written by the
workers) and the store are read by ``checker.py``, which reports lost jobs and
every duplicate run with the fault that explains it, or none.
"""
