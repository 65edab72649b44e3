"""Compile the pipelines to YAML for KFP and for Vertex AI, and check the result strictly.

The container image every component runs in is chosen here, at compile time (``image``, by default
this package version's release image), not by the environment the compiling process happens to
have: the same code compiles to the same files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp_mlops.core.config import DEFAULT_IMAGE
from kfp_mlops.core.errors import ConfigError, MlopsError

# Relative to the working directory: in a checkout, the committed golden files. Only
# `kfp-mlops compile` writes here; run, submit and schedule compile into folders of their own.
COMPILED_DIR = Path("pipelines") / "compiled"


def pipeline_builders() -> dict[str, Callable[..., Callable]]:
    """Pipeline name -> builder taking ``kubernetes=`` and ``retries=`` (imported lazily: kfp costs ~1 s)."""
    from kfp_mlops.pipelines.monitoring import build_monitoring_pipeline
    from kfp_mlops.pipelines.rollout import build_rollout_pipeline
    from kfp_mlops.pipelines.training import build_training_pipeline

    return {
        "training": build_training_pipeline,
        "monitoring": build_monitoring_pipeline,
        "rollout": build_rollout_pipeline,
    }


def check_pipeline_arguments(name: str, arguments: Mapping[str, Any]) -> None:
    """Refuses unknown parameters and values that would fail a task (see each pipeline's check)."""
    from kfp_mlops.pipelines import monitoring, rollout, training

    checks = {
        "training": training.check_arguments,
        "monitoring": monitoring.check_arguments,
        "rollout": rollout.check_arguments,
    }
    if name not in checks:
        raise ConfigError(f"pipeline {name!r}: unknown; choose one of {', '.join(checks)}")
    checks[name](arguments)


# Parameters whose value "local" means this machine (the spec file `kfp-mlops serve` watches).
LOCAL_TARGETS = ("deploy_target", "target")


def check_cluster_arguments(name: str, arguments: Mapping[str, Any]) -> None:
    """Refuses, before a run goes to a cluster, the local deploy target its pods would refuse at the task.

    Raises:
        ConfigError: ``deploy_target`` (training, monitoring) or ``target`` (rollout) is ``local``,
            given or by default.
    """
    from kfp_mlops.pipelines.parameters import SPECS, option_name

    values = SPECS[name].with_defaults(arguments)
    for target in LOCAL_TARGETS:
        if values.get(target) == "local":
            given = "" if target in arguments else " (the default)"
            raise ConfigError(
                f"{target}=local{given} deploys to this machine's spec file, which a cluster's pods refuse: "
                f"pass {option_name(target)} cluster (or none)"
            )


def cluster_options(name: str) -> list[str]:
    """The options a cluster run of pipeline ``name`` needs beyond its defaults (its deploy target)."""
    from kfp_mlops.pipelines.parameters import SPECS, option_name

    defaults = SPECS[name].defaults()
    return [f"{option_name(target)} cluster" for target in LOCAL_TARGETS if defaults.get(target) == "local"]


@dataclass(frozen=True)
class CompiledPipeline:
    """The two files written for one pipeline."""

    name: str
    kfp_path: Path
    vertex_path: Path


def compile_pipeline(name: str, out_dir: Path, *, image: str = DEFAULT_IMAGE) -> CompiledPipeline:
    """Writes ``<name>.yaml`` (KFP, with kfp-kubernetes settings) and ``<name>.vertex.yaml``.

    Args:
        name: The pipeline.
        out_dir: Where the two files go (created if missing).
        image: The container image every component of the pipeline runs in.

    Raises:
        ConfigError: unknown pipeline name.
    """
    from kfp import compiler

    builders = pipeline_builders()
    if name not in builders:
        raise ConfigError(f"pipeline {name!r}: unknown; choose one of {', '.join(builders)}")
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    result = CompiledPipeline(name, out_dir / f"{name}.yaml", out_dir / f"{name}.vertex.yaml")
    for kubernetes, path in ((True, result.kfp_path), (False, result.vertex_path)):
        pipeline = builders[name](kubernetes=kubernetes)
        pin_image(pipeline, image)
        compiler.Compiler().compile(pipeline, str(path))
        check_compiled(path)
    return result


def compile_all(out_dir: Path, *, image: str = DEFAULT_IMAGE) -> list[CompiledPipeline]:
    """Compiles every pipeline."""
    return [compile_pipeline(name, out_dir, image=image) for name in pipeline_builders()]


def pin_image(pipeline: Any, image: str) -> None:
    """Sets the container image of every component of a built pipeline, sub-pipelines included.

    A component's ``base_image`` is fixed when its module is imported; the executors of the built
    pipeline's spec (one per component, a sub-pipeline's among them) are what compiles into YAML.
    Importers run no container and are left alone.
    """
    executors = pipeline.pipeline_spec.deployment_spec["executors"]
    for name in executors:
        if "container" in executors[name]:
            executors[name]["container"]["image"] = image


def check_compiled(path: Path) -> tuple[object, object | None]:
    """Parses a compiled file strictly into ``PipelineSpec`` (and ``PlatformSpec``).

    Unknown fields fail the parse, so a file that passes is one the KFP backend can read.

    Returns:
        The PipelineSpec and the PlatformSpec (``None`` when there is no platform document).

    Raises:
        MlopsError: the file is not valid YAML, has more than two documents, or a document does not
            match its protobuf schema.
    """
    import yaml
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    try:
        documents = list(yaml.safe_load_all(Path(path).read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise MlopsError(f"{path}: not readable as YAML: {exc}") from None
    if not 1 <= len(documents) <= 2:
        raise MlopsError(f"{path}: expected 1 or 2 YAML documents, found {len(documents)}")
    try:
        spec = json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
        platform = (
            json_format.ParseDict(documents[1], pipeline_spec_pb2.PlatformSpec()) if len(documents) == 2 else None
        )
    except json_format.ParseError as exc:
        raise MlopsError(f"{path}: does not match the KFP pipeline spec: {exc}") from None
    return spec, platform
