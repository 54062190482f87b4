"""``python -m masa_jobs.cli`` runs the ``masa-jobs`` command."""

from . import main

if __name__ == "__main__":
    main()
