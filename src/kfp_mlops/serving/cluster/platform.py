"""One deployment spec on either cluster platform: Seldon Core v1 or KServe.

:func:`render` gives the objects a spec becomes, in the order they are applied: a
``SeldonDeployment`` for ``seldon``; our ``ServingRuntime`` and an ``InferenceService`` for
``kserve``. :func:`deploy` applies them and waits (:func:`~.kube_apply.apply_and_wait`: restore
on failure). On KServe a two-way split needs the first (stable) predictor to be the revision the
cluster rolled out, which KServe cannot be told (see :mod:`.kserve`): when the InferenceService
there does not roll it out already -- a first ``ab`` deploy, or a rollout's first canary after the
champion was deployed ``single`` under another predictor name -- the stable predictor is rolled out
alone first, then the split applied. A failure of that second apply restores the stable predictor
alone, which then serves everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import ConfigError
from kfp_mlops.serving.cluster import kserve, kube_apply, seldon_deployment
from kfp_mlops.serving.cluster.resources import ServingOptions
from kfp_mlops.serving.spec import DeploymentSpec

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

PLATFORMS = ("seldon", "kserve")


def check_platform(platform: str) -> str:
    """Returns ``platform`` if known.

    Raises:
        ConfigError: naming the known ones.
    """
    if platform not in PLATFORMS:
        raise ConfigError(f"serving platform {platform!r}: unknown; choose one of {', '.join(PLATFORMS)}")
    return platform


def render(spec: DeploymentSpec, *, platform: str, serving: ServingOptions) -> list[dict[str, Any]]:
    """The checked objects ``spec`` becomes on ``platform``, in apply order (the deployment last).

    Raises:
        ConfigError: unknown platform, invalid options; InvalidSpec: as the platform's renderer.
    """
    if check_platform(platform) == "seldon":
        return [seldon_deployment.render(spec, serving=serving)]
    return [
        kserve.serving_runtime(serving=serving, namespace=spec.namespace),
        kserve.render(spec, serving=serving),
    ]


def deploy(
    spec: DeploymentSpec,
    *,
    platform: str,
    serving: ServingOptions,
    client: ApiClient | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 5.0,
    settle_s: float = 15.0,
) -> kube_apply.ApplyResult:
    """Applies ``spec`` on ``platform`` and waits until it is ready (restoring the previous state if not).

    Args:
        spec: the deployment.
        platform: ``seldon`` or ``kserve``.
        serving: images, service account, prediction log, KServe logger.
        client: the Kubernetes API client (default: :func:`~.kube_apply.api_client`).
        timeout_s: how long each wait may take.
        poll_s, settle_s: as for :func:`~.kube_apply.apply_and_wait`.

    Returns:
        The result of the deployment's apply (the last one).

    Raises:
        InvalidSpec, ConfigError: before anything is sent; ClusterError, ApplyFailed: see
        :func:`~.kube_apply.apply_and_wait`.
    """
    *prerequisites, manifest = render(spec, platform=platform, serving=serving)
    client = client or kube_apply.api_client()
    stable = kserve.stable_spec(spec) if platform == "kserve" else None
    if stable is not None:
        first = stable.live[0]
        if kserve.rolled_out(kube_apply.read(manifest, client=client)) != (first.name, first.model_uri):
            stable_manifest = kserve.render(stable, serving=serving)
            for prerequisite in prerequisites:
                kube_apply.apply(prerequisite, client=client)
            prerequisites = []
            kube_apply.apply_and_wait(
                stable_manifest, client=client, timeout_s=timeout_s, poll_s=poll_s, settle_s=settle_s
            )
    for prerequisite in prerequisites:
        kube_apply.apply(prerequisite, client=client)
    return kube_apply.apply_and_wait(manifest, client=client, timeout_s=timeout_s, poll_s=poll_s, settle_s=settle_s)
