"""Pipelines built from the components, and their compiled YAML under compiled/."""
