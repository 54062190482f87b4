"""Handlers of one app: only the container whose ``job_packages`` name it registers them.

Imported by the registry-scope tests only (through ``job_packages`` or
directly); its recurring job fires on 29 February at midnight only, so that
the default containers of later tests in the session never see it tick.
"""
