"""A package of job handlers that only ``JobRegistry.discover`` imports."""
