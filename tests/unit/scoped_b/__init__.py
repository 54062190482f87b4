"""Handlers of another app, beside ``scoped_a`` in the same process (see there)."""
