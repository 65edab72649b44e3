"""Serving: one model code path (``model``), the deployment spec (``spec``), and the runtimes."""
