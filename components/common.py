"""What every component shim shares: the image it runs in and JSON-safe artifact metadata."""

from __future__ import annotations

from typing import Any

from kfp_mlops.core.config import Settings

# Read once when a component module is imported (i.e. at compile time): KFP_MLOPS_IMAGE selects the
# image a compiled pipeline pins; locally, kfp.local runs the same functions without any image.
COMPONENT_IMAGE = Settings.from_env().component_image


def json_safe(value: Any) -> Any:
    """Converts numpy scalars and tuples so KFP can store ``value`` as artifact metadata."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value
