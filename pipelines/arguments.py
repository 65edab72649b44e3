"""Checking pipeline arguments before anything runs or is submitted: what every pipeline's check starts with."""

from collections.abc import Mapping
from typing import Any

from kfp_mlops.core.errors import ConfigError


def with_defaults(pipeline: Any, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline's parameter defaults overridden by ``arguments``.

    Raises:
        ConfigError: an argument the pipeline does not take, naming the ones it does.
    """
    inputs = pipeline.component_spec.inputs
    unknown = sorted(set(arguments) - set(inputs))
    if unknown:
        raise ConfigError(
            f"pipeline {pipeline.name}: unknown parameter(s) {', '.join(unknown)}; it takes {', '.join(inputs)}"
        )
    return {name: spec.default for name, spec in inputs.items()} | dict(arguments)
