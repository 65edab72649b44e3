"""Where a rollout applies its specs: the local stack, the spec file ``kfp-mlops serve`` watches, a cluster.

A :class:`Target` moves a deployment to a :class:`~kfp_mlops.serving.spec.DeploymentSpec`, or
raises and leaves the previous one serving. :func:`make_target` builds one by name (``local``,
``cluster``, ``none``), for the CLI and the rollout component; what a target needs (the spec
file, a timeout, the cluster's serving platform and options) is passed in, never read from the
environment here.

A cluster target drives Seldon Core or KServe (``platform``). KServe has no shadow predictor, so a
rollout on it must skip the shadow stage (plan ``{"shadow": false}``): a shadow stage's spec is
refused when applied, and the controller records the rollout as rolled back (see
:mod:`kfp_mlops.serving.cluster.kserve`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kfp_mlops.core import storage
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.serving.cluster.platform import check_platform
from kfp_mlops.serving.cluster.resources import ServingOptions
from kfp_mlops.serving.local.serve import deployment_file
from kfp_mlops.serving.spec import DeploymentSpec

TARGETS = ("local", "cluster", "none")


class Target(Protocol):
    """Where a deployment spec is applied.

    A target may also offer ``unhealthy() -> {predictor: reason}``: a step then rolls back at once
    when the challenger is down (its log would stay silent).
    """

    def apply(self, spec: DeploymentSpec) -> None:
        """Moves the deployment to ``spec``; raises (leaving the previous one serving) on failure."""


@dataclass
class LocalStackTarget:
    """A running :class:`~kfp_mlops.serving.local.stack.LocalStack`."""

    stack: Any

    def apply(self, spec: DeploymentSpec) -> None:
        """Applies ``spec`` to the running stack (its servers and router)."""
        self.stack.apply(spec)

    def unhealthy(self) -> dict[str, str]:
        """Predictor -> why, for every predictor whose server process is no longer running."""
        return {
            name: f"server process exited with code {server.process.poll()}"
            for name, server in self.stack.servers.items()
            if server.process.poll() is not None
        }


@dataclass
class SpecFileTarget:
    """The deployment spec file that ``kfp-mlops serve`` watches and applies.

    Attributes:
        path: The file (for a deployment: :func:`kfp_mlops.serving.local.serve.deployment_file`).
    """

    path: Path

    def apply(self, spec: DeploymentSpec) -> None:
        """Writes ``spec`` to the file; a running ``kfp-mlops serve`` applies it in place."""
        storage.write_json(str(self.path), spec.to_dict())


@dataclass
class ClusterTarget:
    """A deployment on a cluster, Seldon Core or KServe: rendered, applied, waited for (restored on failure).

    Attributes:
        serving: The model-server images, service account, prediction log (and KServe logger).
        platform: ``seldon`` (a SeldonDeployment) or ``kserve`` (an InferenceService).
        client: A Kubernetes API client (None: :func:`kfp_mlops.serving.cluster.kube_apply.api_client`).
        timeout_s: How long the deployment may take to become ready.
    """

    serving: ServingOptions
    platform: str = "seldon"
    client: Any = None
    timeout_s: float = 600.0

    def apply(self, spec: DeploymentSpec) -> None:
        """Server-side applies what ``spec`` renders to on the platform and waits until it is ready."""
        from kfp_mlops.serving.cluster import platform

        platform.deploy(
            spec, platform=self.platform, serving=self.serving, client=self.client, timeout_s=self.timeout_s
        )


def make_target(
    name: str,
    *,
    settings: Settings,
    deployment: str,
    timeout_seconds: float = 600.0,
    platform: str = "seldon",
    serving: ServingOptions | None = None,
) -> SpecFileTarget | ClusterTarget | None:
    """The target for a name: the spec file ``kfp-mlops serve`` watches, a cluster, or none.

    Args:
        name: ``local``, ``cluster`` or ``none`` (decide and record only).
        settings: Where the local spec files live (``settings.home``), and the model-server images
            when ``serving`` is not given.
        deployment: The deployment's name (names the local spec file).
        timeout_seconds: How long a cluster deployment may take to become ready.
        platform: The cluster's serving platform, ``seldon`` or ``kserve``.
        serving: The cluster's serving options (None: ``settings``' images and store, nothing else). Give the
            prediction log the rollout reads, or the servers log nothing for it.

    Raises:
        ConfigError: unknown target or platform.
    """
    check_platform(platform)
    if name == "local":
        return SpecFileTarget(deployment_file(settings, deployment))
    if name == "cluster":
        options = (
            serving if serving is not None else ServingOptions.from_settings(settings, store_root=settings.store_root)
        )
        return ClusterTarget(options, platform, timeout_s=timeout_seconds)
    if name == "none":
        return None
    raise ConfigError(f"rollout target {name!r}: unknown; choose one of {', '.join(TARGETS)}")
